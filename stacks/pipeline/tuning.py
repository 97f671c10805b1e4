"""The Tuning step: SageMaker's Bayesian hyperparameter tuner over the same training job definition."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jax_llm.contract.metrics import OBJECTIVE_METRIC
from jax_llm.contract.paths import PER_JOB_CHECKPOINTS_ENV
from stacks.pipeline import parameters as p
from stacks.pipeline.expressions import Expression, execution_id, join, parameter, step_property
from stacks.pipeline.resources import PipelineResources
from stacks.pipeline.steps import (
    CAPACITY_RETRY,
    CHECKPOINT_LOCAL_PATH,
    SERVICE_RETRY,
    training_job_definition,
)
from stacks.settings import TUNED_HYPERPARAMETERS, PipelineSettings, TuningSettings

TUNING_OUTPUT_PREFIX = "tuning"


def parameter_ranges(tuning: TuningSettings, names: Mapping[str, str] | None = None) -> dict[str, list[dict]]:
    """The search space: learning rate on a log scale, weight decay and warmup steps linearly.

    `names`: a script's own names for them (script mode); a range without one is not searched.
    """
    names = {n: n for n in TUNED_HYPERPARAMETERS} if names is None else names
    continuous = [
        {
            "Name": names.get("learning_rate", ""),
            "MinValue": repr(tuning.learning_rate[0]),
            "MaxValue": repr(tuning.learning_rate[1]),
            "ScalingType": "Logarithmic",
        },
        {
            "Name": names.get("weight_decay", ""),
            "MinValue": repr(tuning.weight_decay[0]),
            "MaxValue": repr(tuning.weight_decay[1]),
            "ScalingType": "Linear",
        },
    ]
    integer = [
        {
            "Name": names.get("warmup_steps", ""),
            "MinValue": str(tuning.warmup_steps[0]),
            "MaxValue": str(tuning.warmup_steps[1]),
            "ScalingType": "Linear",
        }
    ]
    kept = set(names.values())
    return {
        "ContinuousParameterRanges": [r for r in continuous if r["Name"] in kept],
        "IntegerParameterRanges": [r for r in integer if r["Name"] in kept],
    }


def tuning_step(
    name: str,
    res: PipelineResources,
    pipeline: PipelineSettings,
    tuning: TuningSettings,
    *,
    spot: bool,
    prepared: bool,
    static_hyperparameters: dict[str, Expression],
    tuned_names: Mapping[str, str] | None = None,
) -> dict:
    """CreateHyperParameterTuningJob: minimise val_loss, automatic early stopping, limits from parameters.

    On spot, the trials of the built-in trainer checkpoint so that an interrupted trial resumes: all of them
    get the definition's one CheckpointConfig (one S3 prefix, restored whole into every trial), so each is
    told (``JAX_LLM_CHECKPOINTS_PER_JOB``) to keep its checkpoints under ``jobs/<its training job name>``
    and never reads another trial's weights. A team's own script cannot be told, so its trials get none.
    No warm pool: SageMaker documents them for training jobs only, and a tuning job ignores the setting.
    """
    definition = training_job_definition(
        res, pipeline, spot=spot, prepared=prepared, output_prefix=TUNING_OUTPUT_PREFIX, checkpoints=False
    )
    definition["StaticHyperParameters"] = static_hyperparameters
    if spot and tuned_names is None:
        definition["CheckpointConfig"] = {
            "S3Uri": join(
                [f"s3://{res.artifacts_bucket_name}/checkpoints", execution_id(), "tuning", ""], on="/"
            ),
            "LocalPath": CHECKPOINT_LOCAL_PATH,
        }
        definition["Environment"][PER_JOB_CHECKPOINTS_ENV] = "true"
    arguments = {
        "HyperParameterTuningJobConfig": {
            "Strategy": "Bayesian",
            "HyperParameterTuningJobObjective": {"Type": "Minimize", "MetricName": OBJECTIVE_METRIC},
            "ResourceLimits": {
                "MaxNumberOfTrainingJobs": parameter(p.TUNING_MAX_JOBS),
                "MaxParallelTrainingJobs": parameter(p.TUNING_MAX_PARALLEL_JOBS),
            },
            "ParameterRanges": parameter_ranges(tuning, tuned_names),
            "TrainingJobEarlyStoppingType": "Auto",
        },
        "TrainingJobDefinition": definition,
    }
    return {
        "Name": name,
        "Type": "Tuning",
        "Arguments": arguments,
        "RetryPolicies": [CAPACITY_RETRY, SERVICE_RETRY],
    }


def best_val_loss(step_name: str) -> Expression:
    """The objective value of the tuner's best training job."""
    return step_property(step_name, "BestTrainingJob.FinalHyperParameterTuningJobObjectiveMetric.Value")


def best_model_data_url(step_name: str, res: PipelineResources, uncompressed: bool = False) -> Any:
    """The best training job's model: <S3OutputPath>/<training job name>/output/model.tar.gz, or, written
    uncompressed, the prefix of its files, <S3OutputPath>/<training job name>/output/model/."""
    return join(
        [
            f"s3://{res.artifacts_bucket_name}/{TUNING_OUTPUT_PREFIX}",
            step_property(step_name, "BestTrainingJob.TrainingJobName"),
            "output/model/" if uncompressed else "output/model.tar.gz",
        ],
        on="/",
    )
