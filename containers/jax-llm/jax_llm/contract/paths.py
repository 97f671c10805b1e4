"""Every SageMaker container path, derived from one root (`/opt/ml`, or `SAGEMAKER_BASE_DIR`)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

# containers/jax-llm, where this package sits on the machine that builds the image: its build context.
IMAGE_SOURCE = Path(__file__).resolve().parents[2]
DEFAULT_ROOT = "/opt/ml"
BASE_DIR_VARIABLE = "SAGEMAKER_BASE_DIR"  # the training toolkit's name for a root other than /opt/ml

# Channels (`input/data/<name>/` in training, `processing/output/<name>/` of `prepare`): the data `train`
# reads (only `train` is required) and `prepare` writes, and script mode's source under network isolation.
TRAIN_CHANNEL = "train"
VALIDATION_CHANNEL = "validation"
TOKENIZER_CHANNEL = "tokenizer"
DATA_CHANNELS = (TRAIN_CHANNEL, VALIDATION_CHANNEL, TOKENIZER_CHANNEL)
CODE_CHANNEL = "code"
SOURCE_ARCHIVE = "sourcedir.tar.gz"  # what the SDK uploads for entry_point/source_dir
RAW_INPUT = "raw"  # `prepare`'s ProcessingInput of raw text
# What SageMaker makes of a training job's /opt/ml/model and /opt/ml/output/data, side by side in S3 under
# <output path>/<job name>/output/.
MODEL_ARCHIVE = "model.tar.gz"
OUTPUT_ARCHIVE = "output.tar.gz"
# Uncompressed output (OutputDataConfig.CompressionType NONE, one of COMPRESSION_TYPES): /opt/ml/model's files
# under <output path>/<job name>/output/<MODEL_PREFIX>/, /opt/ml/output/data's under <OUTPUT_DATA_PREFIX>/.
COMPRESSION_TYPES = ("GZIP", "NONE")
MODEL_PREFIX = "model"
OUTPUT_DATA_PREFIX = "data"
# What a finished training job leaves for people and tools: beside the weights in model/, and in output/data/.
METRICS_FILE = "metrics.json"  # model/: the final train and validation losses
LOSS_CURVES_JSON = "loss_curves.json"  # output/data/
LOSS_CURVES_PNG = "loss_curves.png"  # output/data/
# Set by the tuning pipeline: its trials share one checkpoint S3 prefix, and SageMaker restores everything
# under it into every trial's checkpoint directory, so each trial keeps its own: checkpoints/jobs/<name>.
PER_JOB_CHECKPOINTS_ENV = "JAX_LLM_CHECKPOINTS_PER_JOB"
JOB_NAME_ENV = "TRAINING_JOB_NAME"  # SageMaker sets it in every training container; a spot restart keeps it


@dataclasses.dataclass(frozen=True)
class SageMakerPaths:
    """The `/opt/ml` tree as training, processing and serving containers see it."""

    root: Path
    checkpoint_job: str = ""  # a tuning trial's job name: its checkpoints are checkpoints/jobs/<name>

    @classmethod
    def from_env(cls, environ: os._Environ | dict | None = None) -> SageMakerPaths:
        """Reads the root from `SAGEMAKER_BASE_DIR` (the training toolkit's variable), else `/opt/ml`, and
        with `JAX_LLM_CHECKPOINTS_PER_JOB=true` the job's checkpoint directory from `TRAINING_JOB_NAME`."""
        environ = os.environ if environ is None else environ
        job = ""
        if environ.get(PER_JOB_CHECKPOINTS_ENV, "").lower() in ("1", "true"):
            job = environ.get(JOB_NAME_ENV, "")
            if not job or "/" in job or job.startswith("."):
                raise ValueError(
                    f"{PER_JOB_CHECKPOINTS_ENV} is set, so checkpoints are kept per job, but "
                    f"{JOB_NAME_ENV} is {job!r}, not a training job name"
                )
        return cls(Path(environ.get(BASE_DIR_VARIABLE) or DEFAULT_ROOT), job)

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
        """This job's checkpoints: the directory SageMaker syncs, or its jobs/<name> for a tuning trial."""
        synced = self.root / "checkpoints"
        return synced / "jobs" / self.checkpoint_job if self.checkpoint_job else synced

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

    def processing_input(self, name: str) -> Path:
        return self.processing / "input" / name

    def processing_output(self, name: str) -> Path:
        return self.processing / "output" / name


# The tree as the container sees it on SageMaker: the absolute paths a job definition names (LocalPath).
CONTAINER_PATHS = SageMakerPaths(Path(DEFAULT_ROOT))
