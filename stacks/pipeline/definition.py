"""The two pipeline definitions: training (train, gate on val_loss, register) and tuning (tune instead);
with a tracking server, a Track step beside the gate logs the run(s) to MLflow (``tracking``).

Both share the parameters, the run-time switches (prepare or not, spot or on-demand; see
``branches``) and the registration gate; only the job step and where the model and its val_loss
come from differ. The result is a plain dict that may hold CloudFormation tokens; the construct
serialises it with ``Stack.to_json_string``.
"""

from __future__ import annotations

from jax_llm.contract.metrics import OBJECTIVE_METRIC
from stacks.pipeline import parameters as p
from stacks.pipeline.branches import Variant, run_time_switches
from stacks.pipeline.expressions import step_property
from stacks.pipeline.resources import PipelineResources
from stacks.pipeline.steps import registration_gate, script_hyperparameters, training_step
from stacks.pipeline.tracking import track_training_step, track_tuning_step
from stacks.pipeline.tuning import best_model_data_url, best_val_loss, tuning_step
from stacks.settings import PipelineSettings, ScriptSettings, TuningSettings

DEFINITION_VERSION = "2020-12-01"  # the only pipeline definition schema version SageMaker accepts


def _definition(parameters: list[p.Parameter], steps: list[dict]) -> dict:
    return {
        "Version": DEFINITION_VERSION,
        "Metadata": {},
        "Parameters": [x.to_definition() for x in parameters],
        "Steps": steps,
    }


def training_definition(
    res: PipelineResources, pipeline: PipelineSettings, script: ScriptSettings | None = None
) -> dict:
    """(Prepare ->) Train (spot or on-demand) -> register when val_loss <= MaxValLoss, else fail.

    With `script` enabled the jobs run the team's entry point with its own (static) hyperparameters; the
    trainer's stay pipeline parameters because Prepare reads vocab_size from them."""
    hyperparameters = p.hyperparameter_parameters(pipeline)
    job_hyperparameters = (
        script_hyperparameters(script, res)
        if script is not None and script.enabled
        else p.hyperparameter_refs(hyperparameters)
    )
    parameters = (
        p.data_parameters(pipeline, res.data_bucket_name) + p.training_parameters(pipeline) + hyperparameters
    )

    def chain(variant: Variant) -> list[dict]:
        train = f"Train{variant.suffix}"
        val_loss = step_property(train, f"FinalMetricDataList['{OBJECTIVE_METRIC}'].Value")
        model = step_property(train, "ModelArtifacts.S3ModelArtifacts")
        track = [track_training_step(f"Track{variant.suffix}", res, train)] if res.tracking_arn else []
        return [
            training_step(
                train,
                res,
                pipeline,
                spot=variant.spot,
                prepared=variant.prepared,
                hyperparameters=job_hyperparameters,
            ),
            *track,
            registration_gate(
                variant.suffix,
                res,
                pipeline,
                source="a training pipeline run",
                val_loss=val_loss,
                model_data_url=model,
            ),
        ]

    return _definition(parameters, run_time_switches(res, pipeline, chain))


def tuning_definition(
    res: PipelineResources,
    pipeline: PipelineSettings,
    tuning: TuningSettings,
    script: ScriptSettings | None = None,
) -> dict:
    """(Prepare ->) Tune (Bayesian over learning rate, warmup, weight decay) -> register the best model.

    With `script` tuned (its names for the three given), the trials run the team's script instead, its
    other hyperparameters static."""
    static = p.hyperparameter_parameters(pipeline, exclude=p.TUNED_HYPERPARAMETERS)
    tuned_names = script.tuned_names if script is not None and script.tuned else None
    static_values = (
        p.hyperparameter_refs(static)
        if tuned_names is None
        else {k: v for k, v in script_hyperparameters(script, res).items() if k not in tuned_names.values()}
    )
    parameters = (
        p.data_parameters(pipeline, res.data_bucket_name)
        + p.training_parameters(pipeline)
        + p.tuning_parameters(tuning)
        + static
    )

    def chain(variant: Variant) -> list[dict]:
        tune = f"Tune{variant.suffix}"
        track = [track_tuning_step(f"Track{variant.suffix}", res, tune)] if res.tracking_arn else []
        return [
            tuning_step(
                tune,
                res,
                pipeline,
                tuning,
                spot=variant.spot,
                prepared=variant.prepared,
                static_hyperparameters=static_values,
                tuned_names=tuned_names,
            ),
            *track,
            registration_gate(
                variant.suffix,
                res,
                pipeline,
                source="the best job of a tuning run",
                val_loss=best_val_loss(tune),
                model_data_url=best_model_data_url(tune, res, pipeline.uncompressed_model),
            ),
        ]

    return _definition(parameters, run_time_switches(res, pipeline, chain))
