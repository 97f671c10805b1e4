"""Pipeline steps as SageMaker Pipelines definition JSON: prepare, train, gate on val_loss, register or fail.

Each job step's ``Arguments`` is the request of the API it stands for (CreateProcessingJob,
CreateTrainingJob, CreateModelPackage) without the job name, which the pipeline generates.
"""

from __future__ import annotations

import json
from typing import Any

from jax_llm.contract.metrics import METRIC_DEFINITIONS, OBJECTIVE_METRIC
from jax_llm.contract.paths import CODE_CHANNEL, CONTAINER_PATHS, DATA_CHANNELS, RAW_INPUT
from jax_llm.contract.script_mode import PROGRAM, SUBMIT_DIRECTORY
from stacks.pipeline import parameters as p
from stacks.pipeline.expressions import Expression, condition, execution_id, join, parameter, step_property
from stacks.pipeline.resources import PipelineResources
from stacks.settings import PipelineSettings, ScriptSettings

PREPARE_STEP = "Prepare"
CHECKPOINT_LOCAL_PATH = str(CONTAINER_PATHS.checkpoints)
PREPARE_MAX_RUNTIME_SECONDS = 24 * 3600

# Capacity errors (no GPUs of that type free right now) are worth waiting out; the job itself is unchanged.
CAPACITY_RETRY = {
    "ExceptionType": ["SageMaker.CAPACITY_ERROR"],
    "IntervalSeconds": 600,
    "BackoffRate": 2.0,
    "MaxAttempts": 5,
}
# Throttling and transient service faults when the pipeline calls SageMaker.
SERVICE_RETRY = {
    "ExceptionType": ["Step.THROTTLING", "Step.SERVICE_FAULT"],
    "IntervalSeconds": 10,
    "BackoffRate": 2.0,
    "MaxAttempts": 5,
}


def prepare_step(res: PipelineResources, pipeline: PipelineSettings) -> dict:
    """Processing job on our image: raw text in, a BPE tokenizer and token shards out (one per channel)."""
    outputs = [
        {
            "OutputName": channel,
            "S3Output": {
                # Per execution, so two runs never mix shards.
                "S3Uri": join(
                    [f"s3://{res.artifacts_bucket_name}/prepared", execution_id(), channel], on="/"
                ),
                "LocalPath": str(CONTAINER_PATHS.processing_output(channel)),
                "S3UploadMode": "EndOfJob",
            },
        }
        for channel in DATA_CHANNELS
    ]
    arguments = {
        "ProcessingResources": {
            "ClusterConfig": {
                "InstanceCount": 1,
                "InstanceType": parameter(p.PROCESSING_INSTANCE_TYPE),
                "VolumeSizeInGB": pipeline.processing_volume_size_gb,
                "VolumeKmsKeyId": res.kms_key_arn,
            }
        },
        # The tokenizer's vocabulary is the model's: both read the vocab_size hyperparameter.
        "AppSpecification": {
            "ImageUri": res.image_uri,
            "ContainerArguments": ["prepare", "--vocab-size", parameter("vocab_size")],
        },
        "RoleArn": res.execution_role_arn,
        "ProcessingInputs": [
            {
                "InputName": RAW_INPUT,
                "S3Input": {
                    "S3Uri": parameter(p.RAW_DATA_URI),
                    "LocalPath": str(CONTAINER_PATHS.processing_input(RAW_INPUT)),
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                    "S3DataDistributionType": "FullyReplicated",
                },
            }
        ],
        "ProcessingOutputConfig": {"Outputs": outputs, "KmsKeyId": res.kms_key_arn},
        "StoppingCondition": {"MaxRuntimeInSeconds": PREPARE_MAX_RUNTIME_SECONDS},
        "NetworkConfig": {"EnableNetworkIsolation": True, "EnableInterContainerTrafficEncryption": True},
    }
    return {
        "Name": PREPARE_STEP,
        "Type": "Processing",
        "Arguments": arguments,
        "RetryPolicies": [SERVICE_RETRY],
    }


def channel_uris(prepared: bool) -> dict[str, Expression]:
    """Each channel's S3 URI: the Prepare step's output when this run prepared the data, else a parameter."""
    if prepared:
        return {
            c: step_property(PREPARE_STEP, f"ProcessingOutputConfig.Outputs['{c}'].S3Output.S3Uri")
            for c in DATA_CHANNELS
        }
    return {c: parameter(p.CHANNEL_URIS[c]) for c in DATA_CHANNELS}


def training_job_definition(
    res: PipelineResources,
    pipeline: PipelineSettings,
    *,
    spot: bool,
    prepared: bool,
    output_prefix: str,
    checkpoints: bool = True,
) -> dict[str, Any]:
    """What a training job and a tuner's training jobs share: image, data, compute, limits, security.

    Managed spot needs ``MaxWaitTimeInSeconds``, and SageMaker rejects that field when spot is off, so
    the spot and on-demand variants differ in exactly these two fields. ``checkpoints``: sync
    /opt/ml/checkpoints with a per-execution S3 prefix (restored when a job restarts).
    """
    stopping: dict[str, Any] = {"MaxRuntimeInSeconds": parameter(p.MAX_RUNTIME)}
    if spot:
        stopping["MaxWaitTimeInSeconds"] = parameter(p.MAX_WAIT)
    definition = {
        "AlgorithmSpecification": {
            "TrainingImage": res.image_uri,
            "TrainingInputMode": "FastFile",
            "MetricDefinitions": METRIC_DEFINITIONS,
        },
        "RoleArn": res.execution_role_arn,
        "InputDataConfig": [
            {
                "ChannelName": channel,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": uri,
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
            }
            for channel, uri in channel_uris(prepared).items()
        ]
        + _code_channel(res),
        "OutputDataConfig": {
            "S3OutputPath": f"s3://{res.artifacts_bucket_name}/{output_prefix}",
            "KmsKeyId": res.kms_key_arn,
            # NONE: /opt/ml/model's files land under <job>/output/model/ as they are.
            **({"CompressionType": "NONE"} if pipeline.uncompressed_model else {}),
        },
        "ResourceConfig": {
            "InstanceType": parameter(p.INSTANCE_TYPE),
            "InstanceCount": parameter(p.INSTANCE_COUNT),
            "VolumeSizeInGB": pipeline.volume_size_gb,
            "VolumeKmsKeyId": res.kms_key_arn,
        },
        "StoppingCondition": stopping,
        "EnableManagedSpotTraining": spot,
        "EnableNetworkIsolation": True,
        "EnableInterContainerTrafficEncryption": True,
        "Environment": dict(pipeline.environment),
    }
    if checkpoints:
        # A restarted spot job and a capacity retry of the same execution resume from these checkpoints.
        # The trailing "/" matters: SageMaker restores every key that starts with the URI.
        definition["CheckpointConfig"] = {
            "S3Uri": join([f"s3://{res.artifacts_bucket_name}/checkpoints", execution_id(), ""], on="/"),
            "LocalPath": CHECKPOINT_LOCAL_PATH,
        }
    return definition


def _code_channel(res: PipelineResources) -> list[dict]:
    """Script mode: the team's source as the `code` channel, as the SDK sends it under network isolation."""
    if res.training_code_uri is None:
        return []
    source = {
        "S3DataType": "S3Prefix",
        "S3Uri": res.training_code_uri,
        "S3DataDistributionType": "FullyReplicated",
    }
    return [{"ChannelName": CODE_CHANNEL, "InputMode": "File", "DataSource": {"S3DataSource": source}}]


def script_hyperparameters(script: ScriptSettings, res: PipelineResources) -> dict[str, str]:
    """The training job's HyperParameters in script mode: the script's own plus the SDK's two keys, the source
    being the `code` channel's archive as the container sees it."""
    source = CONTAINER_PATHS.channel(CODE_CHANNEL) / res.training_code_file
    return {
        **script.hyperparameters,
        PROGRAM: json.dumps(script.entry_point),
        SUBMIT_DIRECTORY: json.dumps(str(source)),
    }


def training_step(
    name: str,
    res: PipelineResources,
    pipeline: PipelineSettings,
    *,
    spot: bool,
    prepared: bool,
    hyperparameters: dict[str, Expression],
) -> dict:
    """A Training step: CreateTrainingJob with our hyperparameters, retried on capacity errors."""
    arguments = training_job_definition(res, pipeline, spot=spot, prepared=prepared, output_prefix="training")
    arguments["HyperParameters"] = hyperparameters
    return {
        "Name": name,
        "Type": "Training",
        "Arguments": arguments,
        "RetryPolicies": [CAPACITY_RETRY, SERVICE_RETRY],
    }


def register_step(
    name: str,
    res: PipelineResources,
    pipeline: PipelineSettings,
    *,
    model_data_url: Any,
    val_loss: Expression,
    description: str,
) -> dict:
    """A RegisterModel step: CreateModelPackage in the group, approval status from a parameter. The model
    is model.tar.gz (ModelDataUrl) or, uncompressed, the S3 prefix of its files (ModelDataSource), which
    SageMaker copies into /opt/ml/model without an unpack."""
    if pipeline.uncompressed_model:
        container = {
            "Image": res.image_uri,
            "ModelDataSource": {
                "S3DataSource": {"S3Uri": model_data_url, "S3DataType": "S3Prefix", "CompressionType": "None"}
            },
        }
    else:
        container = {"Image": res.image_uri, "ModelDataUrl": model_data_url}
    arguments = {
        "ModelPackageGroupName": res.model_package_group_name,
        "ModelPackageDescription": description,
        "ModelApprovalStatus": parameter(p.APPROVAL_STATUS),
        "InferenceSpecification": {
            "Containers": [container],
            "SupportedContentTypes": ["application/json"],
            "SupportedResponseMIMETypes": ["application/json", "text/event-stream"],
            "SupportedRealtimeInferenceInstanceTypes": list(pipeline.inference_instance_types),
        },
        # Readable in the registry without opening the training job.
        "CustomerMetadataProperties": {
            OBJECTIVE_METRIC: join([val_loss]),
            "PipelineExecutionId": join([execution_id()]),
        },
    }
    return {"Name": name, "Type": "RegisterModel", "Arguments": arguments, "RetryPolicies": [SERVICE_RETRY]}


def fail_step(name: str, message: list[Any]) -> dict:
    """A Fail step: the execution ends Failed with ``message`` (strings and expressions joined)."""
    return {"Name": name, "Type": "Fail", "Arguments": {"ErrorMessage": join(message)}}


def gate_step(name: str, *, val_loss: Expression, if_steps: list[dict], else_steps: list[dict]) -> dict:
    """A Condition step: the if branch when val_loss <= the MaxValLoss parameter, else the else branch."""
    return {
        "Name": name,
        "Type": "Condition",
        "Arguments": {
            "Conditions": [condition("LessThanOrEqualTo", val_loss, parameter(p.MAX_VAL_LOSS))],
            "IfSteps": if_steps,
            "ElseSteps": else_steps,
        },
    }


def registration_gate(
    suffix: str,
    res: PipelineResources,
    pipeline: PipelineSettings,
    *,
    val_loss: Expression,
    model_data_url: Any,
    source: str,
) -> dict:
    """Register the model when its val_loss clears MaxValLoss; otherwise fail and say why."""
    return gate_step(
        f"CheckValLoss{suffix}",
        val_loss=val_loss,
        if_steps=[
            register_step(
                f"RegisterModel{suffix}",
                res,
                pipeline,
                model_data_url=model_data_url,
                val_loss=val_loss,
                description=f"JAX GPT trained by {source}",
            )
        ],
        else_steps=[
            fail_step(
                f"ValLossTooHigh{suffix}",
                [
                    f"{source}: final {OBJECTIVE_METRIC} ",
                    val_loss,
                    " is above MaxValLoss ",
                    parameter(p.MAX_VAL_LOSS),
                    "; the model was not registered.",
                ],
            )
        ],
    )
