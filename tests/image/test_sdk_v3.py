"""SDK v3 (`sagemaker` 3.27, the project's pin) drives the image in its own local mode, offline.

`ModelTrainer(training_mode=Mode.LOCAL_CONTAINER)` through examples/sdk/ (the scripts users run): the
built-in trainer started bare (the image's default command) on one and two hosts, whose losses must equal
local mode's own job of the same hyperparameters; the team's script through SDK v3's driver on one and two
hosts, truly one cluster; and a failed job seen failed by its `failure` file, whatever the SDK says.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.image import sdk
from tests.image.support import HYPERPARAMETERS, SDK_HYPERPARAMETERS


def run_v3(sdk_client, script: str, workdir: Path, corpus: Path, image, *extra: str) -> tuple[Path, str]:
    """One local job through examples/sdk/<script>; its compressed artifacts and everything it printed."""
    root = workdir / f"{workdir.name}-job"  # compose names its project after this directory: unique
    try:
        done = sdk.run_example(
            sdk_client.env,
            script,
            ["local", "--image", image.tag, "--train", str(corpus), "--local-root", str(root), *extra],
            cwd=workdir,
        )
    finally:
        sdk.remove_compose_containers(sdk_client.engine, image.tag)
    artifacts = root / "compressed_artifacts"
    assert (artifacts / "output.tar.gz").is_file(), done.stdout[-4000:]
    return artifacts, done.stdout


@pytest.mark.parametrize("hosts", [1, 2])
def test_builtin_trainer_started_bare_matches_local_modes_losses(
    sdk_client, image, corpus, trained_in_image, tmp_path, hosts
) -> None:
    artifacts, log = run_v3(
        sdk_client,
        "v3_builtin.py",
        tmp_path,
        corpus,
        image,
        "--instance-count",
        str(hosts),
        "--hyperparameters",
        json.dumps(SDK_HYPERPARAMETERS),
    )
    assert sdk.read_member(artifacts / "output.tar.gz", "failure") is None, log[-4000:]
    assert {"config.json", "params.npz", "tokenizer.json"} <= sdk.member_names(artifacts / "model.tar.gz")
    assert f"{hosts} process(es), {hosts} device(s)" in log
    theirs = sdk.losses(sdk.read_member(artifacts / "output.tar.gz", "data/loss_curves.json"))
    tree = trained_in_image.result.trees["algo-1"]
    ours = sdk.losses((tree.output_data / "loss_curves.json").read_text())
    assert [s for s, _ in theirs] == [s for s, _ in ours] == list(range(1, HYPERPARAMETERS["max_steps"] + 1))
    # The same job: two hosts all-reduce the same global batch (float sums in another order: 1e-5).
    np.testing.assert_allclose([v for _, v in theirs], [v for _, v in ours], rtol=1e-5)
    if hosts == 2:  # SDK v3's local resourceconfig names `ethwe`, which the containers do not have
        assert "'ethwe' (from the launcher) does not exist here" in log
        assert "joining 2 processes as process 1" in log


@pytest.mark.parametrize("hosts", [1, 2])
def test_the_teams_script_through_v3s_driver_joins_one_cluster(sdk_client, image, corpus, tmp_path, hosts):
    artifacts, log = run_v3(
        sdk_client, "v3_script_mode.py", tmp_path, corpus, image, "--instance-count", str(hosts)
    )
    assert sdk.read_member(artifacts / "output.tar.gz", "failure") is None, log[-4000:]
    # One model, written by process 0 of a cluster of `hosts` processes (not `hosts` separate copies).
    assert sdk.member_names(artifacts / "model.tar.gz") == {"bigram.npy", "hosts.json"}
    record = json.loads(sdk.read_member(artifacts / "model.tar.gz", "hosts.json"))
    assert record == {"processes": hosts, "hosts": [f"algo-{i + 1}" for i in range(hosts)]}
    assert log.count("epoch 1/1 loss=") == hosts
    if hosts == 2:
        assert "joining 2 processes as process 1, coordinator algo-1:7777 (from SM_ variables)" in log


def test_a_failed_job_is_judged_by_its_failure_file(sdk_client, image, corpus, tmp_path) -> None:
    artifacts, log = run_v3(
        sdk_client,
        "v3_builtin.py",
        tmp_path,
        corpus,
        image,
        "--hyperparameters",
        json.dumps({"lerning_rate": 0.01}),
    )
    failure = sdk.read_member(artifacts / "output.tar.gz", "failure")
    assert failure is not None, log[-4000:]  # whatever the SDK printed about the job
    assert failure.startswith("HyperparameterError: hyperparameter 'lerning_rate'")
    assert sdk.member_names(artifacts / "model.tar.gz") == set()
