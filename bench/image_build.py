"""Image build times: cold (base and every layer) against a rebuild after a one-line source change.

    PYTHONPATH=.:containers/jax-llm python bench/image_build.py [--cold] [--variant cpu|gpu]

`--cold` first makes the local base again (`localhost/jax-llm-base:bookworm`, mmdebstrap: what a machine
without a registry does) and builds every layer again (`--no-cache`); nothing of the engine's is
removed. The rebuild builds a copy of containers/jax-llm whose `jax_llm/__init__.py` has one more line,
so only the source layer should be rebuilt: its time over the cold build's is the ratio to watch. Prints the
image's size and each layer's.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from jax_llm.contract.paths import IMAGE_SOURCE
from local_mode import base_image, container_engine
from local_mode.container_engine import ContainerEngine


def timed(what, *args, **kwargs) -> float:
    start = time.monotonic()
    what(*args, **kwargs)
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cold", action="store_true", help="remake the local base, rebuild every layer")
    parser.add_argument("--variant", choices=("cpu", "gpu"), default="cpu")
    args = parser.parse_args()
    name, reasons = container_engine.find_engine()
    if name is None:
        raise SystemExit(f"no container engine: {'; '.join(reasons)}")
    engine = ContainerEngine(name, tag=f"localhost/jax-llm:bench-{args.variant}", gpu=args.variant == "gpu")
    say = lambda line: print(f"[bench] {line}", flush=True)  # noqa: E731
    figures = {}
    if args.cold:  # the base as a machine without a registry makes it (the old one stays until unused)
        figures["base: mmdebstrap + import"] = timed(base_image.make_local_base, name, say)
        base = base_image.LOCAL_BASE
    else:
        base = base_image.resolve(name, say)
    figures["build" + (" (cold)" if args.cold else " (as cached)")] = timed(
        engine.build, say, base, no_cache=args.cold
    )
    with tempfile.TemporaryDirectory() as tmp:
        context = Path(tmp) / "jax-llm"
        shutil.copytree(IMAGE_SOURCE, context, ignore=shutil.ignore_patterns("__pycache__"))
        with open(context / "jax_llm" / "__init__.py", "a") as init:
            init.write(f"# bench/image_build.py: a one-line change at {time.time()}\n")
        figures["rebuild after a one-line source change"] = timed(engine.build, say, base, context)
    cold = next(v for k, v in figures.items() if k.startswith("build"))
    for what, seconds in figures.items():
        print(f"{what:45s} {seconds:7.1f} s")
    print(f"{'rebuild / build':45s} {figures['rebuild after a one-line source change'] / cold:7.3f}")
    print(f"image {engine.tag}: {engine.image_size() / 1e9:.2f} GB")
    print(
        subprocess.run(
            [name, "history", "--format", "{{.Size}}\t{{.CreatedBy}}", engine.tag],
            capture_output=True,
            text=True,
        ).stdout[:3000]
    )


if __name__ == "__main__":
    main()
