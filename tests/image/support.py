"""What the image tests share besides fixtures: the tiny job's hyperparameters, how a test runs a training job
in containers of the test image, and the list of what did not run (said again in the terminal summary).

Fixtures (the image, the corpus, the shared trained job, the SDK's client) and the summary hook live in
`conftest.py` and are built from these; test modules import from here, never from a conftest.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from local_mode.container_engine import ContainerEngine
from local_mode.runner import JobResult, run_training

__all__ = [
    "HYPERPARAMETERS",
    "NOT_RUN",
    "SDK_HYPERPARAMETERS",
    "ImageJob",
    "SdkClient",
    "train_in_image",
]

# The SDK's own values: local mode's tree JSON-encodes them as the estimators do ("tiny" -> "\"tiny\"").
# Per-step losses and a checkpoint every 4 steps, so that a stopped job and its resumption can be compared
# with one uninterrupted run step by step.
HYPERPARAMETERS = {
    "preset": "tiny",
    "max_steps": 80,
    "batch_size": 8,
    "seq_len": 64,
    "learning_rate": 0.003,
    "warmup_steps": 4,
    "vocab_size": 512,
    "log_every": 1,
    "eval_every": 40,
    "eval_batches": 1,
    "checkpoint_every": 4,
    "seed": 7,
    # What the SDK and the tuner add, which the trainer must ignore.
    "sagemaker_region": "us-east-1",
    "sagemaker_container_log_level": 20,
    "_tuning_objective_metric": "val_loss",
}

# The same job for the SDK tests, whose losses must equal the shared job's: checkpoints do not change the
# training, and none (instead of one every 4 steps) saves most of a job's time.
SDK_HYPERPARAMETERS = {**HYPERPARAMETERS, "checkpoint_every": 0}  # 0: only on SIGTERM

# What did not run and why (no container engine, no compose tool, no SDK v2 venv), appended by the fixtures
# that skip; conftest's terminal summary prints the first.
NOT_RUN: list[str] = []


@dataclasses.dataclass(frozen=True)
class ImageJob:
    """A finished job, everything it printed, and its checkpoint store (the S3 prefix) if it had one."""

    result: JobResult
    lines: list[str]
    checkpoints: Path | None = None

    @property
    def log(self) -> str:
        return "\n".join(self.lines)


def train_in_image(image: ContainerEngine, workdir: Path, job_name: str, **kwargs) -> ImageJob:
    """A training job in containers of the test image (local mode's runner, as `--docker` runs it)."""
    lines: list[str] = []
    kwargs.setdefault("hyperparameters", HYPERPARAMETERS)
    result = run_training(workdir, job_name, engine=image, log=lines.append, **kwargs)
    return ImageJob(result, lines, kwargs.get("checkpoints"))


@dataclasses.dataclass(frozen=True)
class SdkClient:
    """What an SDK test needs: the environment its SDK process runs in, and the engine's name."""

    env: dict[str, str]
    engine: str
