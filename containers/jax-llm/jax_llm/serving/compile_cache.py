"""`python -m jax_llm compile-cache`: a model's serving programs compiled into a directory that ships with it.

An endpoint instance keeps nothing across a scale-in, a scale-to-zero or a replacement: every new instance
starts from the image and the model data alone, and compiling is most of its start (docs/serving.md). So
the compiled programs travel in the model data: this command, run as a processing job on the serving
instance type (an entry's key holds the device kind and the JAX/XLA versions, so entries made on another
kind are never read) and with the endpoint's serving variables (JAX_LLM_MAX_BATCH, JAX_LLM_MAX_CONTEXT, ...:
they decide which programs exist), writes the entries to `--output`. Copied as `compile_cache/` into an
uncompressed model's S3 prefix (or into the directory before it is tarred), they seed the server's local
cache at start (`loader.seed_compilation_cache`).

    python -m jax_llm compile-cache [--model /opt/ml/processing/input/model]
                                    [--output /opt/ml/processing/output/compile_cache]
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from jax_llm.contract.failure import write_failure, write_message
from jax_llm.contract.paths import SageMakerPaths
from jax_llm.serving.settings import ServingSettings, SettingsError
from jax_llm.serving.startup import StartupTimes


class CompileCacheError(ValueError):
    """Bad arguments or settings; the message says which."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would exit(2); a processing job needs the message file
        raise CompileCacheError(f"compile-cache: {message}\n{self.format_usage()}")


def compile_into(settings: ServingSettings) -> StartupTimes:
    """Loads and compiles every serving program of `settings.model_dir` with `settings.compile_cache_dir` as
    JAX's cache (written there), then stops the engine. Returns the start budget it took."""
    from jax_llm.serving.engine.loader import load_engine  # JAX is imported only once the arguments are good

    times = StartupTimes()
    engine = load_engine(settings, None, times)
    times.ready()
    engine.stop(timeout=settings.shutdown_grace_s)
    return times


def main(argv: list[str]) -> int:
    """Entry point: exit 0 with the entries written; otherwise the reason in output/message, non-zero."""
    paths = SageMakerPaths.from_env()
    parser = _Parser(prog="python -m jax_llm compile-cache", description=__doc__)
    parser.add_argument("--model", type=Path, default=paths.processing / "input" / "model")
    parser.add_argument("--output", type=Path, default=paths.processing / "output" / "compile_cache")
    try:
        args = parser.parse_args(argv)
        if not args.model.is_dir():
            raise CompileCacheError(f"compile-cache: the model directory {args.model} does not exist")
        settings = dataclasses.replace(
            ServingSettings.from_env(), model_dir=args.model, compile_cache_dir=args.output
        )
    except (CompileCacheError, SettingsError) as error:
        write_message(paths.message, str(error))
        return 2
    try:
        times = compile_into(settings)
    except Exception as error:  # noqa: BLE001 (any failure must reach output/message)
        write_failure(paths.message, error)
        return 1
    entries = sum(1 for p in args.output.rglob("*") if p.is_file())
    print(f"compile-cache: {entries} entries in {args.output}; {times.summary()}", flush=True)
    return 0
