"""Stopping on SIGTERM: the flag the signal handler sets, the exception the loop raises after checkpointing.

SageMaker sends SIGTERM on StopTrainingJob, at MaxRuntime and before a spot interruption, and
SIGKILL 120 s later. The trainer then exits 143 (128 + SIGTERM), never 0: the run did not complete,
so nothing may look like a finished model. Stdlib only: the entry point needs it before JAX loads.
"""

from __future__ import annotations

import signal
from pathlib import Path

EXIT_INTERRUPTED = 128 + signal.SIGTERM


class Interrupted(Exception):
    """SIGTERM arrived; a checkpoint was saved at `step`."""

    def __init__(self, step: int, checkpoint_dir: Path):
        self.step = step
        super().__init__(
            f"training stopped by SIGTERM after step {step}; checkpoint {step} (this host's part) "
            f"saved in {checkpoint_dir}; a restarted job resumes from it"
        )


class StopFlag:
    """Set by the SIGTERM handler; read by the loop between steps (a handler must not do the work itself)."""

    def __init__(self):
        self.requested = False

    def __call__(self, signum, frame):
        # Nothing else here: printing from a handler can hit a half-written stdout buffer ("reentrant call").
        self.requested = True
