"""MLflow tracking's side of the contract: the environment variables that decide it, and the run's tags.

Set in the job's Environment (the pipeline's steps, local mode) and read by `jax_llm.training.tracking`.
MLflow's own variable names where MLflow has one. Stdlib only: the stacks and local mode import it.
"""

import logging

from jax_llm.contract.paths import JOB_NAME_ENV

URI_ENV = "MLFLOW_TRACKING_URI"  # a server URL, a local store, or a SageMaker managed MLflow ARN; unset: off
EXPERIMENT_ENV = "MLFLOW_EXPERIMENT_NAME"  # one experiment per pipeline
# Where an experiment the run creates keeps its artifacts (local mode: beside its store); unset: the store's.
ARTIFACT_LOCATION_ENV = "JAX_LLM_MLFLOW_ARTIFACT_LOCATION"
# A key (the tuning job): the run becomes a child of the run tagged with it.
PARENT_ENV = "JAX_LLM_MLFLOW_PARENT_RUN"
PIPELINE_EXECUTION_ENV = "JAX_LLM_PIPELINE_EXECUTION"
IMAGE_TAG_ENV = "JAX_LLM_IMAGE_TAG"
DEFAULT_EXPERIMENT = "jax-llm"

# Environment variable -> the run tag it becomes.
TAG_ENV = {
    JOB_NAME_ENV: "sagemaker.job_name",
    PIPELINE_EXECUTION_ENV: "sagemaker.pipeline_execution",
    IMAGE_TAG_ENV: "image_tag",
}
PARENT_TAG = "jax_llm.parent_key"  # on the parent run: the key its children name


def quiet_arn_plugin(uri: str) -> None:
    """For a URI that is not an ARN: sagemaker-mlflow's header provider (0.5.0) parses every URI as an ARN
    and fails on any other, which MLflow logs as a warning on every request; keep those out of the log."""
    if not uri.startswith("arn:"):
        logging.getLogger("mlflow.tracking.request_header.registry").setLevel(logging.ERROR)


def experiment_id_of(client, name: str, artifact_location: str | None = None) -> str:
    """The experiment's id, created when missing (another job may create it at the same moment). `client` is
    an `mlflow.MlflowClient`: the trainer's and local mode's, which both find experiments by this rule."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location)
    except Exception:  # noqa: BLE001 - lost the race to another job: read theirs
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id
