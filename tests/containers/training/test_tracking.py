"""Training jobs logging to a real MLflow tracking server (the `mlflow` package's own, on 127.0.0.1)."""

import json
from pathlib import Path

from mlflow import MlflowClient

from jax_llm.contract.metrics import parse_metrics
from tests.support import TINY_HYPERPARAMETERS, free_port, run_training, start_training, write_training_tree

# A few steps are enough: two log intervals, two evaluations.
SHORT = {
    **TINY_HYPERPARAMETERS,
    "max_steps": "8",
    "log_every": "4",
    "eval_every": "4",
    "checkpoint_every": "0",
    "warmup_steps": "2",
}


def _runs(client: MlflowClient, experiment: str):
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"experiment {experiment!r} was not created"
    return client.search_runs([found.experiment_id])


def test_a_run_logs_its_parameters_metric_history_tags_and_artifacts(tmp_path, mlflow_server):
    root = write_training_tree(tmp_path / "opt-ml", SHORT)
    code, log = run_training(
        root,
        MLFLOW_TRACKING_URI=mlflow_server,
        MLFLOW_EXPERIMENT_NAME="jax-llm-training",
        TRAINING_JOB_NAME="pipelines-abc123-TrainOnDemandFromRaw-x1",
        JAX_LLM_PIPELINE_EXECUTION="arn:aws:sagemaker:us-east-1:111122223333:pipeline/"
        "jax-llm-training/execution/abc123",
        JAX_LLM_IMAGE_TAG="3f2a9c",
    )
    assert code == 0, log[-3000:]
    assert "MLflow tracking off" not in log and "WARNING mlflow" not in log

    client = MlflowClient(mlflow_server)
    [run] = _runs(client, "jax-llm-training")
    assert run.info.status == "FINISHED" and run.info.run_name == "pipelines-abc123-TrainOnDemandFromRaw-x1"
    assert f"MLflow run {run.info.run_id}" in log  # the job's log says where its record is
    assert run.data.tags["sagemaker.job_name"] == "pipelines-abc123-TrainOnDemandFromRaw-x1"
    assert run.data.tags["sagemaker.pipeline_execution"].endswith("/execution/abc123")
    assert run.data.tags["image_tag"] == "3f2a9c"

    # Every resolved hyperparameter (defaults included) and the model config.
    params = run.data.params
    assert params["preset"] == "tiny" and params["max_steps"] == "8" and params["learning_rate"] == "0.003"
    assert params["adam_b2"] == "0.95" and params["fsdp"] == "False"  # defaults nobody sent
    assert params["model.vocab_size"] == "512" and params["model.max_seq_len"] == "64"

    # The metric history is the log's, step by step.
    logged = parse_metrics(log)
    for name in ("train_loss", "val_loss", "learning_rate", "tokens_per_sec", "mfu"):
        history = client.get_metric_history(run.info.run_id, name)
        assert [m.step for m in history] == [4, 8], name
        for metric, printed in zip(history, logged[name]):
            # The log prints 4 decimals (3 significant digits for the learning rate); MLflow keeps them all.
            assert abs(metric.value - printed) <= max(5e-5, 5e-4 * abs(printed)), (name, metric, printed)

    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert artifacts == {"loss_curves.png", "loss_curves.json", "metrics.json"}
    metrics_file = client.download_artifacts(run.info.run_id, "metrics.json", str(tmp_path))
    assert json.loads(Path(metrics_file).read_text()) == json.loads(
        (root / "model" / "metrics.json").read_text()
    )


def test_two_hosts_log_one_run_under_the_tuning_jobs_parent(tmp_path, mlflow_server):
    hosts = ("algo-1", "algo-2")
    address = f"127.0.0.1:{free_port()}"
    processes = [
        start_training(
            write_training_tree(tmp_path / host, SHORT, hosts=hosts, current_host=host),
            tmp_path / f"{host}.log",
            JAX_COORDINATOR_ADDRESS=address,
            MLFLOW_TRACKING_URI=mlflow_server,
            MLFLOW_EXPERIMENT_NAME="jax-llm-tuning",
            TRAINING_JOB_NAME="tune-7f3-001-a1b2c3",
            JAX_LLM_MLFLOW_PARENT_RUN="tune-7f3",
        )
        for host in hosts
    ]
    try:
        codes = [p.wait(timeout=300) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
    logs = [(tmp_path / f"{host}.log").read_text() for host in hosts]
    assert codes == [0, 0], "\n".join(log[-2000:] for log in logs)

    runs = _runs(MlflowClient(mlflow_server), "jax-llm-tuning")
    parents = [r for r in runs if r.data.tags.get("jax_llm.parent_key") == "tune-7f3"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(runs) == 2 and len(parents) == 1 and len(children) == 1  # one trial run, logged once
    assert children[0].data.tags["mlflow.parentRunId"] == parents[0].info.run_id
    assert children[0].info.run_name == "tune-7f3-001-a1b2c3"
    assert "MLflow run" in logs[0] and "MLflow run" not in logs[1]


def test_an_unreachable_server_leaves_training_unaffected_and_is_said_once(tmp_path):
    root = write_training_tree(tmp_path / "opt-ml", SHORT)
    nobody = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    code, log = run_training(root, MLFLOW_TRACKING_URI=nobody)
    assert code == 0, log[-3000:]
    assert log.count("MLflow tracking off for this run") == 1 and nobody in log
    assert (root / "model" / "params.npz").is_file() and (root / "model" / "metrics.json").is_file()
    assert not (root / "output" / "failure").exists()
