"""`python -m ops runs`: recent runs from a real MLflow tracking server, or the registry's versions."""

from __future__ import annotations

import time

from mlflow import MlflowClient
from mlflow.entities import Metric

from tests.ops.test_cli import GROUP, TRAINING_PIPELINE, TUNING_PIPELINE, _deploy_stack, _register
from tests.support import free_port


def _log(
    client: MlflowClient,
    experiment: str,
    name: str,
    losses: list[tuple[float, float]],
    parent: str | None = None,
) -> str:
    """A finished run with a train/val loss history, as the Track step logs one."""
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    tags = {"mlflow.parentRunId": parent} if parent else {}
    run_id = client.create_run(experiment_id, run_name=name, tags=tags).info.run_id
    now = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[
            Metric(k, v, now, step)
            for step, (train, val) in enumerate(losses, 1)
            for k, v in (("train_loss", train), ("val_loss", val))
        ],
    )
    client.set_terminated(run_id, "FINISHED")
    return run_id


def test_runs_lists_both_pipelines_runs_newest_first_with_final_metrics(cli, moto, mlflow_server):
    _deploy_stack(
        moto,
        "TrainingStack",
        {
            "TrainingPipelineName": "ops-training",
            "TuningPipelineName": "ops-tuning",
            "ModelPackageGroupName": GROUP,
            "MlflowTrackingServerArn": mlflow_server,
        },
    )
    client = MlflowClient(mlflow_server)
    _log(client, "ops-training", "pipelines-aaa-TrainSpotFromRaw-1", [(5.0, 5.2), (3.1, 3.4)])
    parent = _log(client, "ops-tuning", "tune-7f3", [])
    _log(client, "ops-tuning", "tune-7f3-001-ab", [(4.0, 4.4), (2.9, 3.05)], parent=parent)
    _log(client, "someone-else", "not-ours", [(1.0, 1.0)])

    result = cli("runs")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert len(lines) == 3  # both pipelines' experiments, nobody else's
    assert "ops-tuning: tune-7f3 / tune-7f3-001-ab" in lines[0]  # newest first, a trial under its parent
    assert "train_loss=2.9 val_loss=3.05" in lines[0] and "FINISHED" in lines[0]
    assert "ops-training: pipelines-aaa-TrainSpotFromRaw-1" in lines[2] and "val_loss=3.4" in lines[2]

    one = cli("runs", "--experiment", "ops-training", "--limit", "5")
    assert one.code == 0 and len(one.out.splitlines()) == 1


def test_without_a_tracking_server_runs_lists_the_registrys_versions(cli, moto):
    _deploy_stack(
        moto,
        "TrainingStack",
        {
            "TrainingPipelineName": TRAINING_PIPELINE,
            "TuningPipelineName": TUNING_PIPELINE,
            "ModelPackageGroupName": GROUP,
        },
    )
    import boto3

    boto3.client("sagemaker", endpoint_url=moto).create_model_package_group(ModelPackageGroupName=GROUP)
    _register(moto, 2.5, "exec1")
    result = cli("runs")
    assert result.code == 0, result.err
    assert "tracks no runs in MLflow" in result.out and "val_loss=2.5" in result.out


def test_an_unreachable_server_or_no_experiment_is_one_clear_line(cli, moto, mlflow_server):
    nobody = f"http://127.0.0.1:{free_port()}"
    down = cli("runs", "--tracking-uri", nobody, "--experiment", "x")
    assert down.code == 1 and down.err.splitlines() == [down.err.splitlines()[0]]
    assert down.err.startswith(f"error: MLflow at {nobody}")
    empty = cli("runs", "--tracking-uri", mlflow_server, "--experiment", "never-tracked")
    assert empty.code == 1 and "No experiment 'never-tracked'" in empty.err
