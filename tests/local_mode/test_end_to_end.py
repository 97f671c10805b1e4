"""The lifecycle through the runner: prepare -> train on two hosts -> model.tar.gz -> serve -> invoke."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pytest

from local_mode.demo import build_corpus
from local_mode.endpoint import EndpointError, LocalEndpoint
from local_mode.runner import run_processing, run_training

from .test_runner import local_mode

pytestmark = pytest.mark.slow

CHANNELS = ("tokenizer", "train", "validation")
# A few steps only: this proves the wiring, not the learning (the demo shows that).
FEW_STEPS = {
    "preset": "tiny",
    "max_steps": 4,
    "batch_size": 8,
    "seq_len": 64,
    "warmup_steps": 1,
    "log_every": 2,
    "eval_every": 0,
    "eval_batches": 2,
    "checkpoint_every": 0,
    "seed": 3,
}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Stdlib source through the `prepare` processing job; its outputs, as the training channels take them."""
    base = tmp_path_factory.mktemp("e2e")
    build_corpus(base / "raw", 300_000)
    outputs = {name: base / "s3" / name for name in CHANNELS}
    result = run_processing(
        base / "work",
        "prepare",
        inputs={"raw": base / "raw"},
        outputs=outputs,
        arguments=["prepare", "--vocab-size", "400", "--validation-fraction", "0.1"],
        log=lambda line: None,
    )
    assert result.ok, result.log
    return outputs


def test_two_hosts_train_package_serve_and_invoke(tmp_path: Path, prepared: dict[str, Path]) -> None:
    trained = run_training(
        tmp_path / "work", "e2e", hyperparameters=FEW_STEPS, channels=prepared, hosts=2, log=lambda line: None
    )
    assert trained.ok, trained.log[-3000:]
    assert trained.exit_codes == {"algo-1": 0, "algo-2": 0}
    assert "2 process(es)" in trained.log  # the two processes formed one JAX cluster, not two lone jobs
    assert "[algo-2] " in trained.log  # each host's output is told apart, like per-host log streams
    assert not any(trained.trees["algo-2"].model.iterdir())  # only one host writes the model
    with tarfile.open(trained.model_archive) as tar:
        assert {"config.json", "params.npz", "tokenizer.json"} <= set(tar.getnames())

    with LocalEndpoint(trained.model_archive, tmp_path / "endpoint", log=lambda line: None) as endpoint:
        endpoint.wait_until_healthy(timeout_s=240)
        assert not (endpoint.paths.root / "input").exists()  # a fresh tree: the model, nothing from training
        (answer,) = endpoint.invoke("def main(", max_new_tokens=8, do_sample=True, seed=1)
        again = endpoint.invoke("def main(", max_new_tokens=8, do_sample=True, seed=1)
        assert isinstance(answer["generated_text"], str) and answer["generated_text"]
        assert again == [answer]  # same seed, same completion
        with pytest.raises(EndpointError, match="answered 4"):
            endpoint.invoke("def main(", max_new_tokens=-5)
        assert endpoint.invoke("x = ", max_new_tokens=4)  # still serving after a bad request
    assert endpoint.process.poll() is not None  # stopped with the context

    # A model its devices cannot hold fails the wait at once, with the server's reason, not at the timeout.
    too_small = {"JAX_LLM_DEVICE_MEMORY_BYTES": "100000"}
    with (
        LocalEndpoint(
            trained.model_archive, tmp_path / "small", environment=too_small, log=lambda line: None
        ) as small,
        pytest.raises(EndpointError, match="answered /ping 500: .*with one decode slot.*usable"),
    ):
        small.wait_until_healthy(timeout_s=240)


def test_an_unknown_hyperparameter_fails_with_the_containers_message(
    tmp_path: Path, prepared: dict[str, Path]
) -> None:
    run = local_mode(
        "train",
        "--workdir",
        str(tmp_path / "work"),
        "--job-name",
        "typo",
        "--train",
        str(prepared["train"]),
        "--hp",
        "preset=tiny",
        "--hp",
        "lerning_rate=0.1",
        cwd=tmp_path,
    )
    assert run.returncode == 1
    failure = (tmp_path / "work" / "typo" / "algo-1" / "output" / "failure").read_text()
    assert "hyperparameter 'lerning_rate'" in failure and "did you mean 'learning_rate'" in failure
    assert (
        "training job typo failed: algo-1: HyperparameterError: hyperparameter 'lerning_rate'" in run.stdout
    )
    assert not (tmp_path / "work" / "typo" / "output" / "model.tar.gz").exists()


def test_serving_a_missing_archive_is_a_clear_error(tmp_path: Path) -> None:
    run = local_mode(
        "serve", "--workdir", str(tmp_path / "work"), "--model", str(tmp_path / "none.tar.gz"), cwd=tmp_path
    )
    assert run.returncode == 2 and "does not exist" in run.stdout


def test_a_job_given_the_checkpoint_store_of_a_finished_run_resumes_from_it(
    tmp_path: Path, tiny_training_run
) -> None:
    """CheckpointConfig: the store (the shared tiny run's) is restored into checkpoints/, synced back out."""
    run_root = tiny_training_run.root
    store = tmp_path / "s3-checkpoints"
    shutil.copytree(run_root / "checkpoints", store)
    stored = json.loads((run_root / "input" / "config" / "hyperparameters.json").read_text())
    hyperparameters = {key: json.loads(value) for key, value in stored.items()}
    finished = hyperparameters["max_steps"]
    resumed = run_training(
        tmp_path / "work",
        "resumed",
        hyperparameters={**hyperparameters, "max_steps": finished + 2},
        channels={"train": run_root / "input" / "data" / "train"},
        checkpoints=store,
        log=lambda line: None,
    )
    assert resumed.ok, resumed.log[-3000:]
    assert f"restored checkpoint {finished}" in resumed.log
    assert f"step {finished + 2}/{finished + 2}" in resumed.log and "step 2/" not in resumed.log  # continued


def test_an_uncompressed_model_is_trained_and_served_without_an_archive(
    tmp_path: Path, prepared: dict[str, Path]
) -> None:
    """CompressionType NONE: the model's files land under output/model/ (no model.tar.gz), and the endpoint
    serves that directory as SageMaker serves a ModelDataSource S3 prefix, copied without an unpack."""
    trained = run_training(
        tmp_path / "work",
        "plain",
        hyperparameters=FEW_STEPS,
        channels=prepared,
        compression="NONE",
        log=lambda line: None,
    )
    assert trained.ok, trained.log[-3000:]
    assert trained.model_data == trained.output_dir / "model" and not trained.model_archive.exists()
    assert {"config.json", "params.npz", "tokenizer.json"} <= {p.name for p in trained.model_data.iterdir()}
    assert not list(trained.output_dir.rglob("*.tar.gz"))
    with LocalEndpoint(trained.model_data, tmp_path / "endpoint", log=lambda line: None) as endpoint:
        endpoint.wait_until_healthy(timeout_s=240)
        for name in ("config.json", "params.npz"):
            assert (endpoint.paths.model / name).read_bytes() == (trained.model_data / name).read_bytes()
        (answer,) = endpoint.invoke("def main(", max_new_tokens=8)
        assert isinstance(answer["generated_text"], str)
