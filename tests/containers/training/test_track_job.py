"""`python -m jax_llm track`: finished jobs logged from their outputs in S3 (moto) to a real MLflow server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import urllib.request
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber
from mlflow import MlflowClient

from jax_llm.training import track_job
from tests.support import CONTAINER_SRC, free_port

BUCKET = "jax-llm-artifacts"


@pytest.fixture
def s3_env(moto_server, monkeypatch, tmp_path) -> dict[str, str]:
    """Fake credentials sending every AWS client to a freshly reset moto server, with the artifacts bucket."""
    urllib.request.urlopen(urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST")).close()
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": moto_server,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    return env


def _upload_job(run_root: Path, prefix: str, job: str, tmp_path: Path) -> str:
    """The job's model/ and output/data/ as SageMaker uploads them: <prefix>/<job>/output/*.tar.gz."""
    s3 = boto3.client("s3")
    for archive, directory in (
        ("model.tar.gz", run_root / "model"),
        ("output.tar.gz", run_root / "output" / "data"),
    ):
        local = tmp_path / f"{job}-{archive}"
        with tarfile.open(local, "w:gz") as tar:
            for path in sorted(directory.iterdir()):
                tar.add(path, arcname=path.name)
        s3.upload_file(str(local), BUCKET, f"{prefix}/{job}/output/{archive}")
    return f"s3://{BUCKET}/{prefix}/{job}/output/model.tar.gz"


def _track(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    full = {**os.environ, **env, "PYTHONPATH": str(CONTAINER_SRC)}
    return subprocess.run(
        [sys.executable, "-m", "jax_llm", "track", *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_a_training_job_is_logged_from_its_outputs_with_the_trainers_record(
    tiny_training_run, mlflow_server, s3_env, tmp_path
):
    job = "pipelines-7k2m9x0q1w3e-TrainSpotFromRaw-a1b2c3d4e5"
    uri = _upload_job(tiny_training_run.root, "training", job, tmp_path)
    done = _track(
        ["--model-uri", uri, "--job-name", job],
        {
            **s3_env,
            "MLFLOW_TRACKING_URI": mlflow_server,
            "MLFLOW_EXPERIMENT_NAME": "jax-llm-training-replayed",
            "JAX_LLM_PIPELINE_EXECUTION": "arn:aws:sagemaker:us-east-1:111122223333:pipeline/p/execution/"
            "7k2m9x0q1w3e",
            "JAX_LLM_IMAGE_TAG": "3f2a9c",
        },
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{job}: logged" in done.stdout

    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("jax-llm-training-replayed")
    [run] = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == job and run.info.status == "FINISHED"
    assert run.data.tags["sagemaker.job_name"] == job and run.data.tags["image_tag"] == "3f2a9c"
    assert run.data.tags["sagemaker.pipeline_execution"].endswith("execution/7k2m9x0q1w3e")
    assert run.data.params["max_steps"] == "24" and run.data.params["model.vocab_size"] == "512"
    # The same history the job's trainer recorded, step by step.
    record = json.loads((tiny_training_run.root / "output" / "data" / "mlflow_run.json").read_text())
    for name in ("train_loss", "val_loss", "learning_rate", "tokens_per_sec"):
        expected = [(step, value) for key, value, step, _ in record["metrics"] if key == name]
        assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, name)] == expected
    assert [s for s, _ in expected] == [4, 8, 12, 16, 20, 24]
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {
        "loss_curves.png",
        "loss_curves.json",
        "metrics.json",
    }


def _upload_uncompressed_job(run_root: Path, prefix: str, job: str) -> str:
    """The job's outputs as SageMaker uploads them with CompressionType NONE: each file of model/ under
    <prefix>/<job>/output/model/, each of output/data/ under <prefix>/<job>/output/data/."""
    s3 = boto3.client("s3")
    for name, directory in (("model", run_root / "model"), ("data", run_root / "output" / "data")):
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            s3.upload_file(str(path), BUCKET, f"{prefix}/{job}/output/{name}/{path.relative_to(directory)}")
    return f"s3://{BUCKET}/{prefix}/{job}/output/model/"


def test_a_job_written_uncompressed_is_logged_like_one_written_as_archives(
    tiny_training_run, mlflow_server, s3_env, tmp_path, monkeypatch
):
    """modelDataCompression=none: S3ModelArtifacts is the model/ prefix, and nothing is tarred."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "jax-llm-uncompressed")
    uncompressed = _upload_uncompressed_job(tiny_training_run.root, "training", "job-flat")
    archived = _upload_job(tiny_training_run.root, "training", "job-tarred", tmp_path)
    assert track_job.main(["--model-uri", uncompressed]) == 0
    assert track_job.main(["--model-uri", archived]) == 0

    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("jax-llm-uncompressed")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {"job-flat", "job-tarred"}  # the job's name read from the prefix's key, too
    flat, tarred = runs["job-flat"], runs["job-tarred"]
    assert flat.data.params == tarred.data.params and flat.data.metrics == tarred.data.metrics
    for name in ("train_loss", "val_loss"):
        history = [(m.step, m.value) for m in client.get_metric_history(flat.info.run_id, name)]
        assert history == [(m.step, m.value) for m in client.get_metric_history(tarred.info.run_id, name)]
    artifacts = {a.path for a in client.list_artifacts(flat.info.run_id)}
    assert artifacts == {"loss_curves.png", "loss_curves.json", "metrics.json"}


def test_a_tuning_jobs_trials_are_child_runs_of_its_run(
    tiny_training_run, mlflow_server, s3_env, tmp_path, monkeypatch
):
    tuning = "7k2m9x0q1w3e-TuneSpotFromRaw-a1b2"
    trials = [f"{tuning}-001-0a1b2c3d", f"{tuning}-002-4e5f6a7b"]
    for trial in trials:
        _upload_job(tiny_training_run.root, "tuning", trial, tmp_path)
    sagemaker = boto3.client("sagemaker")  # moto has no ListTrainingJobsForHyperParameterTuningJob
    stub = Stubber(sagemaker)
    summaries = [
        {
            "TrainingJobName": name,
            "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:111122223333:training-job/{name}",
            "CreationTime": "2026-11-30T10:00:00Z",
            "TrainingJobStatus": status,
            "TunedHyperParameters": {"learning_rate": "0.0003"},
        }
        for name, status in [
            (trials[0], "Completed"),
            (trials[1], "Stopped"),
            (f"{tuning}-003-8c9d0e1f", "Failed"),
        ]
    ]
    stub.add_response(
        "list_training_jobs_for_hyper_parameter_tuning_job",
        {"TrainingJobSummaries": summaries},
        {"HyperParameterTuningJobName": tuning},
    )
    stub.activate()
    monkeypatch.setattr(
        track_job, "_client", lambda service: sagemaker if service == "sagemaker" else boto3.client(service)
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "jax-llm-tuning-replayed")

    assert track_job.main(["--tuning-job", tuning, "--output-path", f"s3://{BUCKET}/tuning/"]) == 0
    stub.assert_no_pending_responses()

    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("jax-llm-tuning-replayed")
    runs = client.search_runs([experiment.experiment_id])
    [parent] = [r for r in runs if r.data.tags.get("jax_llm.parent_key") == tuning]
    assert parent.info.run_name == tuning and parent.info.status == "FINISHED"  # ended once all are logged
    children = sorted(
        (r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id),
        key=lambda r: r.info.run_name,
    )
    assert [c.info.run_name for c in children] == trials  # the failed trial left no model: not logged
    assert len(runs) == 3


def test_an_unreachable_server_or_a_missing_model_still_exits_0(
    tiny_training_run, s3_env, tmp_path, monkeypatch, capsys
):
    uri = _upload_job(tiny_training_run.root, "training", "job-a", tmp_path)
    nobody = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", nobody)
    assert track_job.main(["--model-uri", uri]) == 0
    said = capsys.readouterr()
    assert "MLflow tracking off for this run" in said.err
    assert "job-a: not logged" in said.out  # the job's name read from its S3 key
    assert track_job.main(["--model-uri", f"s3://{BUCKET}/training/nope/output/model.tar.gz"]) == 0
    assert "not logged" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        track_job.main(["--tuning-job", "t"])  # --output-path is required with it
    assert usage.value.code == 2
