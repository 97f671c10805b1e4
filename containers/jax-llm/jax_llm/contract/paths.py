"""Every SageMaker container path, derived from one root (`/opt/ml`, or `SAGEMAKER_BASE_DIR`)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

DEFAULT_ROOT = "/opt/ml"


@dataclasses.dataclass(frozen=True)
class SageMakerPaths:
    """The `/opt/ml` tree as training, processing and serving containers see it."""

    root: Path

    @classmethod
    def from_env(cls, environ: os._Environ | dict | None = None) -> "SageMakerPaths":
        """Reads the root from `SAGEMAKER_BASE_DIR` (the training toolkit's variable), else `/opt/ml`."""
        environ = os.environ if environ is None else environ
        return cls(Path(environ.get("SAGEMAKER_BASE_DIR") or DEFAULT_ROOT))

    # Training job: input/config/*.json, input/data/<channel>/, model/, output/, checkpoints/.
    @property
    def input_config(self) -> Path:
        return self.root / "input" / "config"

    @property
    def hyperparameters(self) -> Path:
        return self.input_config / "hyperparameters.json"

    @property
    def input_data_config(self) -> Path:
        return self.input_config / "inputdataconfig.json"

    @property
    def resource_config(self) -> Path:
        return self.input_config / "resourceconfig.json"

    def channel(self, name: str) -> Path:
        return self.root / "input" / "data" / name

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def output(self) -> Path:
        return self.root / "output"

    @property
    def output_data(self) -> Path:
        return self.output / "data"

    @property
    def failure(self) -> Path:
        """Training: the first 1024 characters become the job's FailureReason."""
        return self.output / "failure"

    @property
    def message(self) -> Path:
        """Processing: the first 1 KB becomes the job's ExitMessage."""
        return self.output / "message"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    # Processing job: config/*.json, processing/input/<name>/, processing/output/<name>/.
    @property
    def processing_config(self) -> Path:
        return self.root / "config"

    @property
    def processing_job_config(self) -> Path:
        return self.processing_config / "processingjobconfig.json"

    @property
    def processing_resource_config(self) -> Path:
        return self.processing_config / "resourceconfig.json"

    @property
    def processing(self) -> Path:
        return self.root / "processing"
