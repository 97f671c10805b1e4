"""MLflow tracking of one training run: parameters, metric history, tags and artifacts, never failing the job.

The environment decides (names and tags in `jax_llm.contract.tracking`): MLFLOW_TRACKING_URI (a server
URL, a local store such as `sqlite:...`, or a SageMaker managed MLflow ARN through the `sagemaker-mlflow`
plugin; unset: no tracking at all), MLFLOW_EXPERIMENT_NAME, JAX_LLM_MLFLOW_PARENT_RUN (this run becomes a
child of the run tagged with that key: a tuning job's trials), and the tags' variables.

Every MLflow call runs on one background thread, so a slow server never holds up a training step. The
first call that fails is said once on stderr and ends tracking for the run; training goes on. `mlflow` is
imported only when a URI is set.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from jax_llm.contract.tracking import (
    ARTIFACT_LOCATION_ENV,
    DEFAULT_EXPERIMENT,
    EXPERIMENT_ENV,
    JOB_NAME_ENV,
    PARENT_ENV,
    PARENT_TAG,
    TAG_ENV,
    URI_ENV,
    experiment_id_of,
    quiet_arn_plugin,
)

RECORD_FILE = "mlflow_run.json"  # in output/data/: the record a step after the job logs
# A server that does not answer should cost seconds, not MLflow's default of 7 retries of 120 s each.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "15"}
BATCH_LIMIT = 100  # MLflow's most params (and tags) per log_batch call
CLOSE_TIMEOUT_S = 120.0


class RunRecord:
    """What a run logs, kept in memory and written beside the loss curves (`RECORD_FILE`, uploaded with the
    job's output), so that a step outside a network-isolated job can log it afterwards (`track_job`).
    Without a tracking URI this is all a run gets."""

    def __init__(self) -> None:
        self.params: dict[str, str] = {}
        self.metrics: list[list] = []  # [name, value, step, timestamp in ms]

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Parameters, as MLflow stores them (strings)."""
        self.params.update({str(k): str(v) for k, v in params.items()})

    def log_metrics(
        self, metrics: Mapping[str, float | None], step: int, timestamp_ms: int | None = None
    ) -> None:
        """Metrics at `step`; None values (an unknown MFU) are left out."""
        stamp = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
        self.metrics += [[k, float(v), step, stamp] for k, v in metrics.items() if v is not None]

    def log_artifacts(self, paths: list[Path]) -> None:
        """Files for the run's artifacts (a record keeps none: they travel in the job's outputs)."""

    def save(self, path: Path) -> None:
        """Writes the record as JSON."""
        Path(path).write_text(json.dumps({"params": self.params, "metrics": self.metrics}) + "\n")

    def close(self, status: str = "FINISHED") -> None:
        """Ends the run as `status` (FINISHED, FAILED, KILLED)."""


class RunTracker(RunRecord):
    """The record, also logged to one MLflow run as it grows, from a background thread; made by `start`."""

    def __init__(
        self,
        uri: str,
        experiment: str,
        run_name: str | None,
        tags: dict[str, str],
        parent_key: str | None,
        artifact_location: str | None = None,
    ):
        super().__init__()
        self.uri, self.experiment, self.run_name = uri, experiment, run_name
        self.tags, self.parent_key, self.artifact_location = tags, parent_key, artifact_location
        self.client = None
        self.run_id: str | None = None
        self.failed = False
        self._calls: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="mlflow-tracking", daemon=True)
        self._thread.start()
        self._call(self._open)

    def _call(self, call: Callable[[], None]) -> None:
        if not self.failed:
            self._calls.put(call)

    def _work(self) -> None:
        while (call := self._calls.get()) is not None:
            if self.failed:
                continue
            try:
                call()
            except Exception as error:  # noqa: BLE001 - tracking must never end the job
                self.failed = True
                print(
                    f"MLflow tracking off for this run: {self.uri}: cannot log to it "
                    f"({type(error).__name__}: {str(error)[:300]}); training goes on",
                    file=sys.stderr,
                    flush=True,
                )

    def _open(self) -> None:
        for key, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(key, value)
        quiet_arn_plugin(self.uri)
        from mlflow import MlflowClient

        self.client = MlflowClient(tracking_uri=self.uri)
        experiment_id = experiment_id_of(self.client, self.experiment, self.artifact_location)
        tags = dict(self.tags)
        if self.parent_key:
            tags["mlflow.parentRunId"] = parent_run_id(self.client, experiment_id, self.parent_key)
        run = self.client.create_run(experiment_id, run_name=self.run_name, tags=tags)
        self.run_id = run.info.run_id
        print(
            f"MLflow run {self.run_id} ({run.info.run_name}) in experiment {self.experiment!r} at {self.uri}",
            flush=True,
        )

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Records and logs parameters."""
        super().log_params(params)
        items = [(str(k), str(v)) for k, v in params.items()]

        def call() -> None:
            from mlflow.entities import Param

            for i in range(0, len(items), BATCH_LIMIT):
                self.client.log_batch(
                    self.run_id, params=[Param(k, v) for k, v in items[i : i + BATCH_LIMIT]]
                )

        self._call(call)

    def log_metrics(
        self, metrics: Mapping[str, float | None], step: int, timestamp_ms: int | None = None
    ) -> None:
        """Records and logs the metrics at `step`."""
        before = len(self.metrics)
        super().log_metrics(metrics, step, timestamp_ms)
        added = self.metrics[before:]

        def call() -> None:
            from mlflow.entities import Metric

            self.client.log_batch(self.run_id, metrics=[Metric(k, v, stamp, at) for k, v, at, stamp in added])

        self._call(call)

    def log_artifacts(self, paths: list[Path]) -> None:
        """Uploads the files that exist at the top of the run's artifacts."""
        files = [str(p) for p in paths if Path(p).is_file()]
        self._call(lambda: [self.client.log_artifact(self.run_id, f) for f in files])

    def close(self, status: str = "FINISHED") -> None:
        """Ends the run as `status` (FINISHED, FAILED, KILLED); waits up to CLOSE_TIMEOUT_S for the queue."""
        self._call(lambda: self.client.set_terminated(self.run_id, status))
        self._calls.put(None)
        self._thread.join(CLOSE_TIMEOUT_S)
        if self._thread.is_alive():
            print(
                f"MLflow tracking: {self.uri} did not take the run's last records within "
                f"{CLOSE_TIMEOUT_S:.0f} s; they are not logged",
                file=sys.stderr,
                flush=True,
            )


def parent_run_id(client, experiment_id: str, key: str) -> str:
    """The run tagged `PARENT_TAG=key`, created when missing. Trials starting together may each create one:
    all of them then take the oldest, so the children still meet under one parent."""
    query = f"tags.`{PARENT_TAG}` = '{key}'"

    def oldest():
        runs = client.search_runs(
            [experiment_id], query, order_by=["attributes.start_time ASC"], max_results=1
        )
        return runs[0].info.run_id if runs else None

    found = oldest()
    if found is not None:
        return found
    client.create_run(experiment_id, run_name=key, tags={PARENT_TAG: key})
    return oldest()


def finish_parent(environ: Mapping[str, str], key: str) -> None:
    """Ends the parent run of `key` (a tuning job whose trials are all logged) as FINISHED."""
    from mlflow import MlflowClient

    quiet_arn_plugin(environ[URI_ENV])
    client = MlflowClient(tracking_uri=environ[URI_ENV])
    experiment_id = experiment_id_of(
        client, environ.get(EXPERIMENT_ENV) or DEFAULT_EXPERIMENT, environ.get(ARTIFACT_LOCATION_ENV) or None
    )
    client.set_terminated(parent_run_id(client, experiment_id, key), "FINISHED")


def start(environ: Mapping[str, str] | None = None, *, first_host: bool = True) -> RunRecord:
    """A RunTracker when `MLFLOW_TRACKING_URI` is set and this is the first host, else a RunRecord only."""
    environ = os.environ if environ is None else environ
    uri = environ.get(URI_ENV, "").strip()
    if not uri or not first_host:
        return RunRecord()
    tags = {tag: environ[name] for name, tag in TAG_ENV.items() if environ.get(name)}
    return RunTracker(
        uri,
        environ.get(EXPERIMENT_ENV) or DEFAULT_EXPERIMENT,
        environ.get(JOB_NAME_ENV),
        tags,
        environ.get(PARENT_ENV) or None,
        environ.get(ARTIFACT_LOCATION_ENV) or None,
    )
