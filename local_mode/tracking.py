"""Local mode's MLflow store: training jobs here are runs in `<workdir>/mlflow.db`, seen with `mlflow ui`.

On SageMaker the runs go to the tracking server; here the trainer's same code gets a SQLite store (MLflow's
default kind of local store) through the job's Environment, with the artifacts beside it in
`<workdir>/mlartifacts/`. The `mlflow` package (host side only) is imported when a function needs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from jax_llm.contract.tracking import ARTIFACT_LOCATION_ENV, EXPERIMENT_ENV, URI_ENV, experiment_id_of

DB_FILE = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
DEFAULT_EXPERIMENT = "local-mode"
UI_PORT = 5000  # mlflow ui's own default


def local_store(workdir: Path) -> str:
    """The SQLite store under `workdir` (an absolute URI: the trainer runs in another directory)."""
    return f"sqlite:///{Path(workdir).resolve() / DB_FILE}"


def is_local(uri: str) -> bool:
    """A store on this machine's disk rather than a server."""
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri and not uri.startswith("arn:")


def job_environment(uri: str, experiment: str, workdir: Path) -> dict[str, str]:
    """A training job's Environment that makes its trainer log to `uri` under `experiment`. A local store's
    new experiment keeps its artifacts under `workdir` (MLflow's default is the trainer's working directory,
    which is the job's tree)."""
    environment = {URI_ENV: uri, EXPERIMENT_ENV: experiment}
    if is_local(uri):
        environment[ARTIFACT_LOCATION_ENV] = (Path(workdir).resolve() / ARTIFACTS_DIR / experiment).as_uri()
    return environment


def environment(uri: str | None, experiment: str, workdir: Path, *, docker: bool) -> dict[str, str]:
    """The Environment a local training job gets for tracking: into `uri` (None: the local store under
    `workdir`; `none`: no tracking). With --docker none: one training container has no network (as on
    SageMaker) and the store is not in its file system."""
    if uri == "none" or docker:
        return {}
    return job_environment(uri or local_store(workdir), experiment, workdir)


def how_to_look(uri: str) -> str:
    """The command (or URL) that shows the runs."""
    if is_local(uri):
        return f"mlflow ui --backend-store-uri {uri} --port {UI_PORT}   then open http://127.0.0.1:{UI_PORT}"
    return f"open {uri} (experiment list) in a browser"


def run_id_of(uri: str, experiment: str, run_name: str) -> str | None:
    """The newest run called `run_name` in `experiment`, or None."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    runs = client.search_runs(
        [found.experiment_id],
        f"attributes.run_name = '{run_name}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def record(
    uri: str,
    run_id: str | None,
    *,
    experiment: str,
    run_name: str,
    params: Mapping[str, object] | None = None,
    metrics: Mapping[str, float] | None = None,
    step: int = 0,
    artifacts: Mapping[str, str] | None = None,
) -> str:
    """Adds params, metrics at `step` and text artifacts ({file name: text}) to run `run_id`, or to a new
    finished run `run_name` when it is None; returns the run id."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    if run_id is None:
        run_id = client.create_run(experiment_id_of(client, experiment), run_name=run_name).info.run_id
        client.set_terminated(run_id, "FINISHED")
    for key, value in (params or {}).items():
        client.log_param(run_id, key, value)
    for key, value in (metrics or {}).items():
        client.log_metric(run_id, key, float(value), step=step)
    for name, text in (artifacts or {}).items():
        client.log_text(run_id, text, name)
    return run_id
