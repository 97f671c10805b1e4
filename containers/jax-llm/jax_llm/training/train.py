"""`python -m jax_llm train`: the training job's entry point; wires hyperparameters, SIGTERM and failures.

Exit codes: 0 when trained and exported; 143 after SIGTERM (checkpoint saved, no export, see
jax_llm.training.interruption); 1 on any error, with `output/failure` starting with the error's type and message.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import sys

from jax_llm.contract import script_mode
from jax_llm.contract.failure import write_failure, write_message
from jax_llm.contract.hyperparameters import TrainConfig, read_hyperparameters, read_raw
from jax_llm.contract.paths import SageMakerPaths
from jax_llm.training.interruption import EXIT_INTERRUPTED, Interrupted, StopFlag

# What decides a training step's memory, named first in output/failure when the device runs out of it.
MEMORY_SETTINGS = ("preset", "batch_size", "seq_len", "grad_accum_steps", "remat", "fsdp", "compute_dtype")
DEFAULTS_SAID = ", ".join(
    f"{k}={getattr(TrainConfig(), k)}" for k in ("preset", "batch_size", "seq_len", "max_steps")
)


def main(argv: list[str]) -> int:
    """Entry point: 0 when trained and exported, 143 after SIGTERM (checkpoint saved), 1 on any error."""
    paths = SageMakerPaths.from_env()
    stop = StopFlag()
    signal.signal(signal.SIGTERM, stop)
    paths.failure.unlink(missing_ok=True)  # left by an interrupted attempt on the same tree (local mode)
    config = None
    try:
        if not paths.hyperparameters.exists():  # SageMaker always writes it: the tree is broken
            print(
                f"WARNING: {paths.hyperparameters} does not exist (SageMaker always writes it); training "
                f"with EVERY DEFAULT hyperparameter: {DEFAULTS_SAID}",
                file=sys.stderr,
                flush=True,
            )
        raw = read_raw(paths.hyperparameters) if paths.hyperparameters.exists() else {}
        if script_mode.requested(raw):
            return script_mode.run(paths, raw)  # the team's own train.py
        config = read_hyperparameters(paths.hyperparameters)  # fails before anything heavy is imported
        print(f"hyperparameters: {json.dumps(dataclasses.asdict(config))}", flush=True)
        from jax_llm.training.trainer import run  # JAX loads only once the hyperparameters are good

        run(config, paths, stop)
        return 0
    except Interrupted as stopped:
        write_message(paths.failure, str(stopped))
        return EXIT_INTERRUPTED
    except BaseException as error:  # noqa: BLE001 - every failure must reach output/failure
        write_failure(paths.failure, error, headline=out_of_memory_headline(error, config))
        return 1


def out_of_memory_headline(error: BaseException, config: TrainConfig | None) -> str | None:
    """For a device out-of-memory error, a first line naming the settings that decide memory; else None."""
    text = str(error)
    if config is None or not ("RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower()):
        return None
    settings = ", ".join(f"{key}={getattr(config, key)}" for key in MEMORY_SETTINGS)
    return (
        f"OutOfMemoryError: the device ran out of memory. What decides memory: {settings} "
        "(per device: batch_size / grad_accum_steps / devices sequences of seq_len tokens; remat=true "
        "and fsdp=true trade compute and communication for memory; a smaller preset needs less)"
    )
