"""Local mode's MLflow store: `local_mode train` logs its run there and says where; the demo's two runs."""

from __future__ import annotations

from pathlib import Path

from mlflow import MlflowClient
from tokenizers import Tokenizer

from jax_llm.data.shards import ShardWriter
from local_mode import cli, demo, tracking
from tests.support import write_stdlib_corpus

HYPERPARAMETERS = [
    "preset=tiny",
    "max_steps=8",
    "batch_size=8",
    "seq_len=64",
    "learning_rate=0.003",
    "warmup_steps=2",
    "vocab_size=512",
    "log_every=4",
    "eval_every=4",
    "eval_batches=2",
    "checkpoint_every=0",
    "seed=7",
]


def _validation_shards(model_dir: Path, directory: Path) -> Path:
    """Held-out text (a module the model did not train on) tokenized with the model's tokenizer."""
    import sysconfig

    text = (Path(sysconfig.get_paths()["stdlib"]) / "calendar.py").read_text(encoding="utf-8")
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    with ShardWriter(
        directory,
        "validation",
        vocab_size=tokenizer.get_vocab_size(),
        eos_id=0,
        fingerprint="test",
        shard_size=1 << 20,
    ) as writer:
        writer.write(tokenizer.encode(text).ids)
    return directory


def test_local_training_and_the_demos_two_runs_land_in_the_local_store(tmp_path, capsys):
    corpus = write_stdlib_corpus(tmp_path / "raw" / "train.txt").parent
    workdir = tmp_path / "work"
    args = [
        "train",
        "--workdir",
        str(workdir),
        "--train",
        str(corpus),
        "--job-name",
        "demo-train",
        "--experiment",
        demo.EXPERIMENT,
    ]
    for value in HYPERPARAMETERS:
        args += ["--hp", value]
    assert cli.main(args) == 0

    uri = tracking.local_store(workdir)
    printed = capsys.readouterr().out
    assert f"mlflow ui --backend-store-uri {uri}" in printed  # where to look, said at the end
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(demo.EXPERIMENT)
    [run] = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "demo-train" and run.info.status == "FINISHED"
    assert run.data.tags["sagemaker.job_name"] == "demo-train" and run.data.params["max_steps"] == "8"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == [4, 8]
    # Artifacts under the workdir, not in the job's tree where the trainer runs.
    assert experiment.artifact_location.startswith((workdir.resolve() / tracking.ARTIFACTS_DIR).as_uri())
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {
        "loss_curves.png",
        "loss_curves.json",
        "metrics.json",
    }

    # The demo's logging after its endpoints: the trained run gets its held-out loss and samples, and the
    # step-0 model gets a run of its own to compare with.
    model_dir = workdir / "demo-train" / "algo-1" / "model"
    untrained = demo.untrained_archive(model_dir, 7, tmp_path / "untrained")
    validation = _validation_shards(model_dir, tmp_path / "validation")
    demo.record_runs(
        uri,
        {"preset": "tiny", "max_steps": 8},
        validation,
        {
            "demo-train": (model_dir, "trained samples"),
            demo.UNTRAINED_RUN: (untrained.parent / "model", "soup"),
        },
    )

    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {"demo-train", demo.UNTRAINED_RUN}
    trained_loss = runs["demo-train"].data.metrics[demo.HELD_OUT_METRIC]
    untrained_loss = runs[demo.UNTRAINED_RUN].data.metrics[demo.HELD_OUT_METRIC]
    assert trained_loss < untrained_loss - 0.2  # 8 steps already beat the initialization on unseen text
    assert runs[demo.UNTRAINED_RUN].data.params["max_steps"] == "0"
    for run in runs.values():
        assert "samples.txt" in {a.path for a in client.list_artifacts(run.info.run_id)}


def test_tracking_can_be_turned_off_and_is_off_with_docker(tmp_path):
    assert tracking.environment("none", "x", tmp_path, docker=False) == {}
    assert tracking.environment(None, "x", tmp_path, docker=True) == {}
    server = tracking.environment("http://127.0.0.1:5000", "x", tmp_path, docker=False)
    assert server == {"MLFLOW_TRACKING_URI": "http://127.0.0.1:5000", "MLFLOW_EXPERIMENT_NAME": "x"}
    local = tracking.environment(None, "x", tmp_path, docker=False)
    assert local["MLFLOW_TRACKING_URI"] == tracking.local_store(tmp_path)
    assert not (tmp_path / tracking.DB_FILE).exists()  # the trainer creates the store, not a refused job
