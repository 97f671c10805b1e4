"""`python -m jax_llm train`: the training job's entry point; wires hyperparameters, SIGTERM and failures.

Exit codes: 0 when trained and exported; 143 after SIGTERM (checkpoint saved, no export, see
jax_llm.interruption); 1 on any error, with `output/failure` starting with the error's type and message.
"""

from __future__ import annotations

import dataclasses
import json
import signal

from jax_llm.failure import write_failure, write_message
from jax_llm.hyperparameters import read_hyperparameters
from jax_llm.interruption import EXIT_INTERRUPTED, Interrupted, StopFlag
from jax_llm.paths import SageMakerPaths


def main(argv: list[str]) -> int:
    """Entry point: 0 when trained and exported, 143 after SIGTERM (checkpoint saved), 1 on any error."""
    paths = SageMakerPaths.from_env()
    stop = StopFlag()
    signal.signal(signal.SIGTERM, stop)
    paths.failure.unlink(missing_ok=True)  # left by an interrupted attempt on the same tree (local mode)
    try:
        config = read_hyperparameters(paths.hyperparameters)  # fails before anything heavy is imported
        print(f"hyperparameters: {json.dumps(dataclasses.asdict(config))}", flush=True)
        from jax_llm.trainer import run  # JAX and the rest load only once the hyperparameters are good

        run(config, paths, stop)
        return 0
    except Interrupted as stopped:
        write_message(paths.failure, str(stopped))
        return EXIT_INTERRUPTED
    except BaseException as error:  # noqa: BLE001 - every failure must reach output/failure
        write_failure(paths.failure, error)
        return 1
