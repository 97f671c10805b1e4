"""The Track steps: a finished job's run logged to MLflow by a small processing job, outside the training job.

The training jobs run with network isolation: their containers reach nothing, the tracking server included
(SageMaker documents no exception for managed MLflow). So after each Train or Tune step a processing job
on the same image, with network, runs `python -m jax_llm track`, which reads the job's outputs from S3 and
logs the run the trainer recorded (see jax_llm.training.track_job). It fails nothing when the server does
not answer, and registration does not wait for it (nothing reads its properties).
"""

from __future__ import annotations

from typing import Any

from jax_llm.contract.tracking import EXPERIMENT_ENV, IMAGE_TAG_ENV, PIPELINE_EXECUTION_ENV, URI_ENV
from stacks.pipeline.expressions import step_property
from stacks.pipeline.resources import PipelineResources
from stacks.pipeline.steps import SERVICE_RETRY
from stacks.pipeline.tuning import TUNING_OUTPUT_PREFIX

TRACK_INSTANCE_TYPE = "ml.m5.large"  # it downloads two archives and makes a few hundred HTTPS calls
TRACK_VOLUME_GB = 30
TRACK_MAX_RUNTIME_SECONDS = 3600


def _track_step(name: str, res: PipelineResources, arguments: list[Any]) -> dict:
    assert res.tracking_arn is not None
    arguments_ = {
        "ProcessingResources": {
            "ClusterConfig": {
                "InstanceCount": 1,
                "InstanceType": TRACK_INSTANCE_TYPE,
                "VolumeSizeInGB": TRACK_VOLUME_GB,
                "VolumeKmsKeyId": res.kms_key_arn,
            }
        },
        "AppSpecification": {"ImageUri": res.image_uri, "ContainerArguments": ["track", *arguments]},
        "RoleArn": res.execution_role_arn,
        "Environment": {
            URI_ENV: res.tracking_arn,
            EXPERIMENT_ENV: res.tracking_experiment or "jax-llm",
            PIPELINE_EXECUTION_ENV: {"Get": "Execution.PipelineExecutionArn"},
            IMAGE_TAG_ENV: res.image_tag or "",
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": TRACK_MAX_RUNTIME_SECONDS},
        # The one job here with network: it must reach the tracking server. It reads no training data.
        "NetworkConfig": {"EnableNetworkIsolation": False, "EnableInterContainerTrafficEncryption": True},
    }
    return {"Name": name, "Type": "Processing", "Arguments": arguments_, "RetryPolicies": [SERVICE_RETRY]}


def track_training_step(name: str, res: PipelineResources, train_step: str) -> dict:
    """Logs the training job of `train_step` from its model.tar.gz (and the output.tar.gz beside it)."""
    model = step_property(train_step, "ModelArtifacts.S3ModelArtifacts")
    job = step_property(train_step, "TrainingJobName")
    return _track_step(name, res, ["--model-uri", model, "--job-name", job])


def track_tuning_step(name: str, res: PipelineResources, tune_step: str) -> dict:
    """Logs every trial of the tuning job of `tune_step`, as child runs of the tuning job's run."""
    trials = f"s3://{res.artifacts_bucket_name}/{TUNING_OUTPUT_PREFIX}"  # the tuner's S3OutputPath
    return _track_step(
        name,
        res,
        ["--tuning-job", step_property(tune_step, "HyperParameterTuningJobName"), "--output-path", trials],
    )
