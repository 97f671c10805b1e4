"""Cold-start budget of `python -m jax_llm serve` by model size, and what JAX's compilation cache saves.

For each preset, a randomly initialised model is exported (start-up time does not depend on the weights) and
served twice by the real server (`python -m jax_llm serve` on 127.0.0.1): first with an empty compilation
cache (a fresh instance), then with the cache the first start filled (a restarted process, or a cache
shipped with the model). Each start's own budget (its `jax_llm.startup` metric line: boot, import, model
read, device transfer, compile, warm-up runs, engine start) is printed beside the time to the first 200 on
/ping seen from here, and the second start's phases as ratios of the first's.

    PYTHONPATH=.:containers/jax-llm .venv/bin/python bench/cold_start.py [--presets tiny 125m 1.3b]
        [--slots 4] [--max-context 256] [--json results.json]

Every preset is served with the same slots and context cap (JAX_LLM_MAX_BATCH, JAX_LLM_MAX_CONTEXT), so the
same set of programs is compiled for each and only the model's size differs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from bench.serve_load import build_model, start_server
from jax_llm.contract.serving import STARTUP_EVENT, STARTUP_PHASES


def startup_line(log: Path) -> dict:
    """The last start's metric line in a server's log."""
    marker = f'"event":"{STARTUP_EVENT}"'
    return [json.loads(line) for line in log.read_text().splitlines() if marker in line][-1]


def one_start(model_root: Path, cache: Path, log: Path, slots: int, max_context: int) -> dict:
    """One server start to its first /ping 200 and stop; its budget and the time seen from outside."""
    server = start_server(model_root, slots, cache, log, max_context)
    server.stop()
    return {**startup_line(log), "seen_ready_s": server.ready_s}


def model_bytes(model_dir: Path) -> int:
    return sum(p.stat().st_size for p in model_dir.rglob("*") if p.is_file())


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("--presets", nargs="+", default=["tiny", "125m", "1.3b"])
    args.add_argument("--slots", type=int, default=4)
    args.add_argument("--max-context", type=int, default=256)
    args.add_argument("--json", type=Path, help="also write the results here")
    options = args.parse_args()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}")
    print(f"slots {options.slots}, context cap {options.max_context}\n")
    results = []
    for preset in options.presets:
        with tempfile.TemporaryDirectory(prefix=f"cold-start-{preset}-") as tmp:
            root = Path(tmp)
            started = time.perf_counter()
            model_dir = build_model(root, preset)
            exported_s = time.perf_counter() - started
            print(f"{preset}: exported {model_bytes(model_dir) / 1e6:.0f} MB in {exported_s:.0f} s")
            cache, log = root / "compile-cache", root / "serve.log"
            cold = one_start(root, cache, log, options.slots, options.max_context)
            warm = one_start(root, cache, log, options.slots, options.max_context)
            cache_mb = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file()) / 1e6
            results.append(
                {
                    "preset": preset,
                    "model_mb": model_bytes(model_dir) / 1e6,
                    "cache_mb": cache_mb,
                    "cold": cold,
                    "warm": warm,
                }
            )
            print(f"  {'phase':16} {'cold s':>8} {'cached s':>9} {'ratio':>6}")
            for phase in [*STARTUP_PHASES, "ready"]:
                c, w = cold[f"{phase}_ms"] / 1000, warm[f"{phase}_ms"] / 1000
                print(f"  {phase:16} {c:8.2f} {w:9.2f} {w / c if c else float('nan'):6.2f}")
            print(
                f"  seen from outside: cold {cold['seen_ready_s']:.2f} s, "
                f"cached {warm['seen_ready_s']:.2f} s; {cold['programs']} programs, "
                f"{warm['cached_programs']} read from a {cache_mb:.1f} MB cache\n",
                flush=True,
            )
    if options.json:
        options.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
