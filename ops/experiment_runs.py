"""Recent training and tuning runs with their final metrics, from the stack's MLflow tracking server."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime

from jax_llm.contract.tracking import quiet_arn_plugin
from ops.errors import OpsError

SHOWN_METRICS = ("train_loss", "val_loss", "tokens_per_sec", "mfu")
# A command someone waits for: a server that does not answer is said within seconds, not after minutes.
INTERACTIVE_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}


@dataclass
class RunSummary:
    """One MLflow run as the CLI shows it."""

    experiment: str
    name: str
    status: str
    started: datetime
    metrics: dict[str, float] = field(default_factory=dict)  # each metric's last value
    parent: str | None = None  # the parent run's name (a tuning job's trials)


def list_runs(
    tracking_uri: str, experiments: list[str], limit: int, *, profile: str | None = None
) -> list[RunSummary]:
    """The newest `limit` runs of `experiments` (those that exist), newest first.

    An ARN goes through the `sagemaker-mlflow` plugin, which signs with boto3's default session: `profile`
    is handed to it through AWS_PROFILE."""
    if profile and tracking_uri.startswith("arn:"):
        os.environ["AWS_PROFILE"] = profile
    for key, value in INTERACTIVE_HTTP.items():
        os.environ.setdefault(key, value)
    quiet_arn_plugin(tracking_uri)
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri)
    try:
        return _runs(client, tracking_uri, experiments, limit)
    except MlflowException as error:
        raise OpsError(f"MLflow at {tracking_uri}: {str(error)[:500]}") from None


def _runs(client, tracking_uri: str, experiments: list[str], limit: int) -> list[RunSummary]:
    found = {name: client.get_experiment_by_name(name) for name in experiments}
    ids = {e.experiment_id: name for name, e in found.items() if e is not None}
    if not ids:
        raise OpsError(
            f"No experiment {' or '.join(map(repr, experiments))} at {tracking_uri} yet: "
            "no run has been tracked there (start one with `python -m ops train`)."
        )
    runs = client.search_runs(list(ids), order_by=["attributes.start_time DESC"], max_results=limit)
    names = {r.info.run_id: r.info.run_name for r in runs}
    return [
        RunSummary(
            experiment=ids[r.info.experiment_id],
            name=r.info.run_name,
            status=r.info.status,
            started=datetime.fromtimestamp(r.info.start_time / 1000, tz=UTC),
            metrics=dict(r.data.metrics),
            parent=names.get(
                r.data.tags.get("mlflow.parentRunId", ""), r.data.tags.get("mlflow.parentRunId")
            ),
        )
        for r in runs
    ]


def table(runs: list[RunSummary]) -> list[str]:
    """One line per run: start, status, the shown metrics, experiment and name (a trial under its parent)."""
    lines = []
    for run in runs:
        metrics = " ".join(f"{k}={run.metrics[k]:.4g}" for k in SHOWN_METRICS if k in run.metrics) or "-"
        name = f"{run.parent} / {run.name}" if run.parent else run.name
        lines.append(f"{run.started:%Y-%m-%d %H:%M}  {run.status:<9} {metrics:<60} {run.experiment}: {name}")
    return lines
