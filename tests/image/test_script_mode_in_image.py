"""The team's own code on the image: script mode through local mode's `--entry-point/--source-dir`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.image.support import ImageJob, train_in_image
from tests.support import REPO

EXAMPLE = REPO / "examples" / "script_mode" / "src"
SDK_STYLE = {"learning-rate": 0.1, "batch-size": 512, "epochs": 1}


@pytest.fixture(scope="module")
def script_job(image, corpus, tmp_path_factory) -> ImageJob:
    """The example script trained once in a container: the training and the serving test both read it."""
    return train_in_image(
        image,
        tmp_path_factory.mktemp("image-script"),
        "image-script",
        channels={"train": corpus},
        hyperparameters=SDK_STYLE,
        entry_point="train.py",
        source_dir=EXAMPLE,
    )


def test_the_example_script_trains_in_a_container_from_the_code_channel(script_job) -> None:
    job = script_job
    assert job.result.ok, job.log[-3000:]
    tree = job.result.trees["algo-1"]
    written = json.loads(tree.hyperparameters.read_text())
    assert written["sagemaker_submit_directory"] == '"/opt/ml/input/data/code/sourcedir.tar.gz"'
    assert "script mode: /opt/venv/bin/python -u /opt/ml/code/train.py --batch-size 512 --epochs 1" in job.log
    assert "epoch 1/1 loss=" in job.log
    assert np.load(tree.model / "bigram.npy").shape == (256, 256)
    assert job.result.model_archive.is_file()


def test_two_containers_run_the_script_under_jax_distributed_meeting_at_algo_1(image, corpus, tmp_path):
    job = train_in_image(
        image,
        tmp_path,
        "image-script-two",
        channels={"train": corpus},
        hosts=2,
        hyperparameters=SDK_STYLE,
        entry_point="train.py",
        source_dir=EXAMPLE,
    )
    assert job.result.exit_codes == {"algo-1": 0, "algo-2": 0}, job.log[-3000:]
    hosts = json.loads((job.result.trees["algo-1"].model / "hosts.json").read_text())
    assert hosts == {"processes": 2, "hosts": ["algo-1", "algo-2"]}


def test_a_failing_script_s_error_reaches_output_failure_from_the_container(image, corpus, tmp_path) -> None:
    job = train_in_image(
        image,
        tmp_path,
        "image-script-bad",
        channels={"train": corpus},
        hyperparameters={**SDK_STYLE, "epochs": "many"},
        entry_point="train.py",
        source_dir=EXAMPLE,
    )
    assert job.result.exit_codes == {"algo-1": 2}  # argparse's own exit code
    failure = job.result.trees["algo-1"].failure.read_text()
    assert failure.startswith("train.py: error: argument --epochs: invalid int value: 'many'")


def test_the_example_handler_serves_the_script_s_model_from_a_container(image, script_job, tmp_path) -> None:
    import httpx

    from local_mode.endpoint import LocalEndpoint

    job = script_job
    assert job.result.ok, job.log[-3000:]
    with LocalEndpoint(
        job.result.model_archive,
        tmp_path / "endpoint",
        engine=image,
        entry_point="inference.py",
        source_dir=EXAMPLE,
        log=lambda line: None,
    ) as served:
        served.wait_until_healthy(timeout_s=120)
        answer = httpx.post(
            f"{served.url}/invocations", json={"inputs": "def", "max_new_bytes": 4}, timeout=60
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["generated_text"].startswith("def") and len(answer.json()["generated_text"]) == 7
        assert (served.paths.model / "code" / "inference.py").is_file()
