"""Runs several examples/sdk/v2_*.py in one process of the SDK v2 venv (its import is paid once).

    .venv-sdk-v2/bin/python tests/image/sdk_v2_driver.py '[["v2_builtin.py", "local", ...], ...]'

Each example runs as `python examples/sdk/<script> <args>` would (runpy, sys.argv); after each, one line
`case-result: {"script", "exit", "error", "seconds"}` says how it ended. Stdlib only: it runs in the v2 venv.
"""

import json
import runpy
import sys
import time
import traceback
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "sdk"


def main(cases: list[list[str]]) -> None:
    sys.path.insert(0, str(EXAMPLES))  # what `python examples/sdk/x.py` puts first: v2_session imports
    for script, *args in cases:
        sys.argv = [str(EXAMPLES / script), *args]
        exit_code, error, start = 0, None, time.monotonic()
        print(f"case-start: {json.dumps([script, *args])}", flush=True)
        try:
            runpy.run_path(str(EXAMPLES / script), run_name="__main__")
        except SystemExit as stop:
            exit_code = stop.code if isinstance(stop.code, int) else 1
            error = None if isinstance(stop.code, int) or stop.code is None else str(stop.code)
        except Exception as failure:  # noqa: BLE001 - reported, and the next case still runs
            traceback.print_exc()
            exit_code, error = 1, f"{type(failure).__name__}: {failure}"
        seconds = round(time.monotonic() - start, 1)
        result = {"script": script, "exit": exit_code, "error": error, "seconds": seconds}
        print(f"case-result: {json.dumps(result)}", flush=True)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
