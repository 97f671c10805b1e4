"""The pipeline parameters: what a user changes per run without redeploying, with defaults from settings.

Every trainer hyperparameter is a String parameter named exactly like the hyperparameter (SageMaker
passes hyperparameters as strings), so ``--pipeline-parameters Name=learning_rate,Value=3e-4`` works.
"""

from __future__ import annotations

from dataclasses import dataclass

from jax_llm.contract.paths import DATA_CHANNELS, TOKENIZER_CHANNEL, TRAIN_CHANNEL, VALIDATION_CHANNEL
from stacks.pipeline.expressions import Expression, parameter
from stacks.settings import TUNED_HYPERPARAMETERS, PipelineSettings, TuningSettings  # noqa: F401

# Names of the non-hyperparameter parameters, shared by the steps that read them.
PREPARE_DATA = "PrepareData"
RAW_DATA_URI = "RawDataUri"
TRAIN_DATA_URI = "TrainDataUri"
VALIDATION_DATA_URI = "ValidationDataUri"
TOKENIZER_URI = "TokenizerUri"
# The pipeline parameter that names each data channel's S3 URI.
CHANNEL_URIS = {
    TRAIN_CHANNEL: TRAIN_DATA_URI,
    VALIDATION_CHANNEL: VALIDATION_DATA_URI,
    TOKENIZER_CHANNEL: TOKENIZER_URI,
}
PROCESSING_INSTANCE_TYPE = "ProcessingInstanceType"
INSTANCE_TYPE = "TrainingInstanceType"
INSTANCE_COUNT = "TrainingInstanceCount"
USE_SPOT = "UseSpotInstances"
MAX_RUNTIME = "MaxRuntimeSeconds"
MAX_WAIT = "MaxWaitSeconds"
MAX_VAL_LOSS = "MaxValLoss"
APPROVAL_STATUS = "ModelApprovalStatus"
TUNING_MAX_JOBS = "TuningMaxJobs"
TUNING_MAX_PARALLEL_JOBS = "TuningMaxParallelJobs"


@dataclass(frozen=True)
class Parameter:
    """One pipeline parameter: name, SageMaker type (String, Integer, Float, Boolean) and default."""

    name: str
    type: str
    default: str | int | float | bool

    def ref(self) -> Expression:
        """The expression that reads this parameter at run time."""
        return parameter(self.name)

    def to_definition(self) -> dict:
        """The parameter's entry in the definition's ``Parameters`` list."""
        return {"Name": self.name, "Type": self.type, "DefaultValue": self.default}


def data_parameters(pipeline: PipelineSettings, data_bucket_name: str) -> list[Parameter]:
    """Where the data is: raw text that a run with PrepareData=true tokenizes first, or tokenized channels."""
    base = f"s3://{data_bucket_name}"
    tokenized = f"{base}/{pipeline.tokenized_data_prefix}"
    return [
        Parameter(PREPARE_DATA, "Boolean", pipeline.prepare_data),
        Parameter(RAW_DATA_URI, "String", f"{base}/{pipeline.raw_data_prefix}/"),
        Parameter(PROCESSING_INSTANCE_TYPE, "String", pipeline.processing_instance_type),
        *[Parameter(CHANNEL_URIS[c], "String", f"{tokenized}/{c}/") for c in DATA_CHANNELS],
    ]


def training_parameters(pipeline: PipelineSettings) -> list[Parameter]:
    """Instance, spot and time limits of the training jobs, and the registration gate."""
    return [
        Parameter(INSTANCE_TYPE, "String", pipeline.instance_type),
        Parameter(INSTANCE_COUNT, "Integer", pipeline.instance_count),
        Parameter(USE_SPOT, "Boolean", pipeline.use_spot),
        Parameter(MAX_RUNTIME, "Integer", pipeline.max_runtime_seconds),
        Parameter(MAX_WAIT, "Integer", pipeline.max_wait_seconds),
        Parameter(MAX_VAL_LOSS, "Float", pipeline.max_val_loss),
        Parameter(APPROVAL_STATUS, "String", pipeline.model_approval_status),
    ]


def hyperparameter_parameters(pipeline: PipelineSettings, exclude: tuple[str, ...] = ()) -> list[Parameter]:
    """One String parameter per trainer hyperparameter (defaults: the settings' full, validated map)."""
    return [
        Parameter(name, "String", value)
        for name, value in pipeline.hyperparameters.items()
        if name not in exclude
    ]


def tuning_parameters(tuning: TuningSettings) -> list[Parameter]:
    """How many training jobs the tuner runs, in all and at once."""
    return [
        Parameter(TUNING_MAX_JOBS, "Integer", tuning.max_jobs),
        Parameter(TUNING_MAX_PARALLEL_JOBS, "Integer", tuning.max_parallel_jobs),
    ]


def hyperparameter_refs(parameters: list[Parameter]) -> dict[str, Expression]:
    """The training job's HyperParameters map: each hyperparameter reads its own parameter."""
    return {p.name: p.ref() for p in parameters}
