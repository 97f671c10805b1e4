"""A user's `requirements.txt` (script mode's source, an inference handler's `code/`), installed with pip.

Wheels shipped beside the file are preferred (`--find-links`), and pip gives up after one retry of
PIP_TIMEOUT_S per connection, so a job or endpoint with network isolation fails at once with pip's
reason instead of hanging on a network that is not there.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PIP_TIMEOUT_S = 15


def pip_install(code_dir: Path) -> str | None:
    """Installs `code_dir/requirements.txt` if there is one: None when done (or none), else pip's last
    lines."""
    requirements = code_dir / "requirements.txt"
    if not requirements.is_file():
        return None
    print(f"installing {requirements}", flush=True)
    argv = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-input",
        "--disable-pip-version-check",
        "--timeout",
        str(PIP_TIMEOUT_S),
        "--retries",
        "1",
        "--find-links",
        str(code_dir),
        "-r",
        str(requirements),
    ]
    result = subprocess.run(argv, cwd=code_dir, capture_output=True, text=True)
    if result.returncode == 0:
        return None
    return " | ".join([line for line in (result.stderr or result.stdout).splitlines() if line.strip()][-3:])
