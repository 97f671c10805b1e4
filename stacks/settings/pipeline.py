"""The training pipeline's section: data, instances, spot, limits, hyperparameters, registration."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields
from typing import Any

from jax_llm.contract.hyperparameters import HyperparameterError, TrainConfig, parse_hyperparameters
from stacks.settings.context import ML_INSTANCE_TYPE, Context, SettingsError


def _canonical_hyperparameters(key: str, overrides: dict[str, str]) -> dict[str, str]:
    """Every trainer hyperparameter as the string the job receives: the overrides, validated by the trainer's
    own parser (a misspelt or out-of-range key stops synth), over the trainer's defaults."""
    try:
        config = parse_hyperparameters(overrides)
    except HyperparameterError as err:
        raise SettingsError(key, overrides, str(err)) from None

    def text(value: Any) -> str:
        return (
            json.dumps(value)
            if isinstance(value, bool)
            else repr(value)
            if isinstance(value, float)
            else str(value)
        )

    return {f.name: text(getattr(config, f.name)) for f in dataclass_fields(TrainConfig)}


# Environment variable names SageMaker accepts in a training job's Environment.
ENVIRONMENT_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]{0,1023}$")


MODEL_DATA_COMPRESSIONS = ("gzip", "none")


@dataclass(frozen=True)
class PipelineSettings:
    """The training pipeline: data, instances, spot, limits, hyperparameters, registration, deploy runs."""

    start_training: bool  # startTraining: a deploy whose training definition changed starts an execution
    prepare_data: bool  # pipelinePrepareData: default of PrepareData (tokenize raw text in a Prepare step)
    raw_data_prefix: str  # pipelineRawDataPrefix: raw text under s3://<data bucket>/<prefix>/
    tokenized_data_prefix: str  # pipelineTokenizedDataPrefix: <prefix>/{train,validation,tokenizer}/
    processing_instance_type: str  # processingInstanceType: the prepare job's (CPU) instance
    processing_volume_size_gb: int  # processingVolumeSizeGb: its EBS volume
    instance_type: str  # trainingInstanceType: GPU instance of the training jobs
    instance_count: int  # trainingInstanceCount: hosts per training job (one JAX process each)
    volume_size_gb: int  # trainingVolumeSizeGb: EBS volume per host (checkpoints, FastFile cache)
    use_spot: bool  # trainingUseSpot: managed spot (resumes from checkpoints after an interruption)
    max_runtime_seconds: int  # trainingMaxRuntimeSeconds: a job is stopped after this much training time
    max_wait_seconds: int  # trainingMaxWaitSeconds: runtime plus waiting for spot capacity
    hyperparameters: dict[str, str]  # trainingHyperparameters: overrides; here all of them, as strings
    environment: dict[str, str]  # trainingEnvironment: XLA/NCCL/EFA settings of the training containers
    max_val_loss: float  # registerMaxValLoss: register the model only when val_loss <= this
    model_approval_status: str  # modelApprovalStatus: status of a newly registered model package
    inference_instance_types: tuple[str, ...]  # inferenceInstanceTypes: real-time instances of the package
    # modelDataCompression: gzip (model.tar.gz, unpacked before serving) or none (the files under an
    # S3 prefix, registered as ModelDataSource, copied to /opt/ml/model as they are: no unpack on start)
    model_data_compression: str

    @property
    def uncompressed_model(self) -> bool:
        """True when training jobs write the model uncompressed and versions register its S3 prefix."""
        return self.model_data_compression == "none"

    @classmethod
    def from_context(cls, ctx: Context) -> PipelineSettings:
        """Read the pipeline section."""
        prefix = re.compile(r"^[a-zA-Z0-9!_.*'()-]+(/[a-zA-Z0-9!_.*'()-]+)*$")
        prefix_text = "an S3 key prefix without leading or trailing '/'"
        instance_types = ctx.raw("inferenceInstanceTypes")
        ctx.require(
            isinstance(instance_types, list)
            and 0 < len(instance_types) <= 15
            and all(isinstance(t, str) and ML_INSTANCE_TYPE.fullmatch(t) for t in instance_types),
            "inferenceInstanceTypes",
            instance_types,
            "a list of 1-15 SageMaker instance types",
        )
        settings = cls(
            start_training=ctx.boolean("startTraining"),
            prepare_data=ctx.boolean("pipelinePrepareData"),
            raw_data_prefix=ctx.text("pipelineRawDataPrefix", prefix, prefix_text),
            tokenized_data_prefix=ctx.text("pipelineTokenizedDataPrefix", prefix, prefix_text),
            processing_instance_type=ctx.ml_instance_type("processingInstanceType"),
            processing_volume_size_gb=ctx.integer("processingVolumeSizeGb", minimum=1, maximum=16384),
            instance_type=ctx.ml_instance_type("trainingInstanceType"),
            instance_count=ctx.integer("trainingInstanceCount", minimum=1, maximum=256),
            volume_size_gb=ctx.integer("trainingVolumeSizeGb", minimum=1, maximum=16384),
            use_spot=ctx.boolean("trainingUseSpot"),
            max_runtime_seconds=ctx.integer("trainingMaxRuntimeSeconds", minimum=60, maximum=28 * 86400),
            max_wait_seconds=ctx.integer("trainingMaxWaitSeconds", minimum=60, maximum=28 * 86400),
            hyperparameters=_canonical_hyperparameters(
                "trainingHyperparameters",
                ctx.string_map(
                    "trainingHyperparameters",
                    re.compile(r"^[a-z_][a-z0-9_]*$"),
                    "a JSON object of trainer hyperparameters (see jax_llm/contract/hyperparameters.py)",
                ),
            ),
            environment=ctx.string_map(
                "trainingEnvironment",
                ENVIRONMENT_NAME,
                "a JSON object of environment variable names to string values",
            ),
            max_val_loss=ctx.number("registerMaxValLoss", minimum=0.0),
            model_approval_status=ctx.choice("modelApprovalStatus", ("PendingManualApproval", "Approved")),
            model_data_compression=ctx.choice("modelDataCompression", MODEL_DATA_COMPRESSIONS),
            inference_instance_types=tuple(instance_types),
        )
        # SageMaker rejects a spot job whose wait limit does not exceed its runtime limit.
        ctx.require(
            not settings.use_spot or settings.max_wait_seconds > settings.max_runtime_seconds,
            "trainingMaxWaitSeconds",
            settings.max_wait_seconds,
            f"more than trainingMaxRuntimeSeconds ({settings.max_runtime_seconds}) when "
            "trainingUseSpot is true",
        )
        return settings
