"""Training jobs in containers of the image: the contract, two hosts on one network, stop and resume, and
resume on another number of containers."""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from jax_llm.contract.metrics import METRIC_DEFINITIONS
from local_mode.container_engine import container_name
from tests.image.support import HYPERPARAMETERS, ImageJob, train_in_image


def _curves(tree_root: Path) -> dict:
    return json.loads((tree_root / "output" / "data" / "loss_curves.json").read_text())


def _close(a: dict, b: dict, rel: float = 1e-5) -> None:
    """The same steps' losses, each within `rel` of the other run's (float rounding of another layout)."""
    for name in ("train_loss", "val_loss"):
        assert [s for s, _ in a[name]] == [s for s, _ in b[name]], name
        for (step, x), (_, y) in zip(a[name], b[name], strict=True):
            assert abs(x - y) <= rel * abs(y), (name, step, x, y)


@pytest.fixture(scope="module")
def two_hosts(image, corpus, tmp_path_factory) -> ImageJob:
    """The shared job's twin on two containers, synced to a checkpoint store (the S3 prefix both hosts
    share): compared with one host, restarted on two, and resumed on one."""
    workdir = tmp_path_factory.mktemp("image-two-hosts")
    job = train_in_image(
        image,
        workdir,
        "image-two-hosts",
        channels={"train": corpus},
        hosts=2,
        checkpoints=workdir / "checkpoint-store",
    )
    if not job.result.ok:
        pytest.fail(f"training on two containers failed: {job.result.failure_reason}\n{job.log[-3000:]}")
    return job


def test_one_host_trains_logs_metrics_and_exports_what_sagemaker_uploads(trained_in_image) -> None:
    result, log = trained_in_image.result, trained_in_image.log
    tree = result.trees["algo-1"]
    assert result.exit_codes == {"algo-1": 0}
    # The tree holds the SDK's quoting, which the container decoded (and ignored the sagemaker_* keys).
    written = json.loads(tree.hyperparameters.read_text())
    assert written["preset"] == '"tiny"' and written["max_steps"] == "80"
    assert "1 process(es), 1 device(s)" in log
    for definition in METRIC_DEFINITIONS:  # the regexes SageMaker applies to the job's log
        values = re.findall(definition["Regex"], log)
        assert values, definition
        assert all(np.isfinite(float(v)) for v in values)
    assert {p.name for p in tree.model.iterdir()} >= {
        "config.json",
        "tokenizer.json",
        "params.npz",
        "metrics.json",
    }
    assert {"loss_curves.json", "loss_curves.png"} <= {p.name for p in tree.output_data.iterdir()}
    assert not tree.failure.exists()
    assert result.model_archive.is_file()  # local mode tarred model/ as SageMaker does


def test_a_misspelt_hyperparameter_fails_the_job_with_its_name_in_output_failure(
    image, corpus, tmp_path
) -> None:
    job = train_in_image(
        image,
        tmp_path,
        "image-bad-hp",
        channels={"train": corpus},
        hyperparameters={**HYPERPARAMETERS, "lerning_rate": 0.01},
    )
    assert job.result.exit_codes == {"algo-1": 1}
    failure = job.result.trees["algo-1"].failure.read_text()
    assert failure.startswith("HyperparameterError: hyperparameter 'lerning_rate': unknown hyperparameter")
    assert "did you mean 'learning_rate'?" in failure.splitlines()[0]


def test_two_hosts_find_each_other_by_name_and_match_one_host(
    image, corpus, tmp_path, trained_in_image, two_hosts
):
    job, store = two_hosts, two_hosts.checkpoints  # store: the S3 prefix both hosts sync with
    assert job.result.exit_codes == {"algo-1": 0, "algo-2": 0}, job.log[-3000:]
    assert "[algo-1] " in job.log and "2 process(es), 2 device(s)" in job.log
    single, multi = (
        _curves(trained_in_image.result.trees["algo-1"].root),
        _curves(job.result.trees["algo-1"].root),
    )
    _close(multi, single)
    assert not any(job.result.trees["algo-2"].model.iterdir())  # the model comes from one host only
    # Each container wrote only its own part of every checkpoint, about half of the state each.
    parts = {}
    for i, host in enumerate(("algo-1", "algo-2")):
        step_dir = job.result.trees[host].checkpoints / "steps" / "80"
        stem = f"part-{i:05d}-of-00002"
        assert sorted(p.name for p in step_dir.iterdir()) == [f"{stem}.bin", f"{stem}.json"]
        parts[host] = (step_dir / f"{stem}.bin").stat().st_size
    assert max(parts.values()) <= 0.6 * sum(parts.values()), parts

    # A restarted job on two containers gets the union of both parts in each and restores step 80 from it.
    again = train_in_image(
        image,
        tmp_path / "again",
        "image-two-hosts-again",
        channels={"train": corpus},
        hosts=2,
        checkpoints=store,
    )
    assert again.result.exit_codes == {"algo-1": 0, "algo-2": 0}, again.log[-3000:]
    assert "restored checkpoint 80" in again.log
    assert _curves(again.result.trees["algo-1"].root) == multi


def _store_at(job: ImageJob, step: int, into: Path) -> Path:
    """The job's checkpoint store as it stood when `step` was the newest: every host's synced checkpoints
    merged (as the S3 prefix holds them), the steps after `step` left out."""
    for tree in job.result.trees.values():
        shutil.copytree(tree.checkpoints, into, dirs_exist_ok=True)
    for newer in (p for p in (into / "steps").iterdir() if int(p.name) > step):
        shutil.rmtree(newer)
    return into


@pytest.mark.parametrize(("written_by", "resumed_on"), [("two_hosts", 1), ("trained_in_image", 2)])
def test_a_checkpoint_resumes_on_another_number_of_containers_as_if_trained_there(
    written_by, resumed_on, image, corpus, tmp_path, trained_in_image, request
) -> None:
    """Elastic resume: the store of a job on 2 containers (or 1) as it stood at step 72, resumed on 1 (or 2):
    steps 73 to 80 match the uninterrupted run at the new size (one host's, which the two-host job matches)."""
    store = _store_at(request.getfixturevalue(written_by), 72, tmp_path / "checkpoint-store")
    job = train_in_image(
        image,
        tmp_path,
        f"image-elastic-{resumed_on}",
        channels={"train": corpus},
        hosts=resumed_on,
        checkpoints=store,
    )
    hosts = [f"algo-{i + 1}" for i in range(resumed_on)]
    assert job.result.exit_codes == dict.fromkeys(hosts, 0), job.log[-3000:]
    assert "restored checkpoint 72" in job.log and f"{resumed_on} process(es)" in job.log
    resumed = _curves(job.result.trees["algo-1"].root)
    assert [s for s, _ in resumed["train_loss"]] == list(range(1, 81))
    _close(resumed, _curves(trained_in_image.result.trees["algo-1"].root))
    # Its own checkpoints are in the new size's parts, so the next job resumes from them on this size.
    for i, host in enumerate(hosts):
        stem = f"part-{i:05d}-of-{resumed_on:05d}"
        step_dir = job.result.trees[host].checkpoints / "steps" / "80"
        assert sorted(p.name for p in step_dir.iterdir()) == [f"{stem}.bin", f"{stem}.json"]


def test_a_step_whose_part_from_one_container_was_cut_is_set_aside_on_both_and_the_one_before_restored(
    image, corpus, tmp_path, two_hosts, trained_in_image
) -> None:
    """A host killed mid-upload: its part of the newest step (76) is cut short in the store. Both containers of
    the next job set that step aside and restore 72; the losses go on as if nothing had happened."""
    store = _store_at(two_hosts, 76, tmp_path / "checkpoint-store")
    part = store / "steps" / "76" / "part-00001-of-00002.bin"
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    job = train_in_image(
        image, tmp_path, "image-cut-part", channels={"train": corpus}, hosts=2, checkpoints=store
    )
    assert job.result.exit_codes == {"algo-1": 0, "algo-2": 0}, job.log[-3000:]
    for host in ("algo-1", "algo-2"):
        assert f"[{host}] skipping damaged checkpoint 76: incomplete: " in job.log
    assert "restored checkpoint 72" in job.log
    _close(_curves(job.result.trees["algo-1"].root), _curves(trained_in_image.result.trees["algo-1"].root))


def test_stop_checkpoints_exits_143_and_the_next_job_resumes_with_identical_losses(
    image, corpus, tmp_path, trained_in_image
) -> None:
    store = tmp_path / "checkpoint-store"  # the S3 prefix both jobs sync with
    job_name = "image-stopped"
    steps = tmp_path / "work" / job_name / "algo-1" / "checkpoints" / "steps"
    outcome: dict = {}
    runner = threading.Thread(
        target=lambda: outcome.update(
            job=train_in_image(
                image, tmp_path / "work", job_name, channels={"train": corpus}, checkpoints=store
            )
        )
    )
    runner.start()
    deadline = time.monotonic() + 300
    while not (steps / "4").is_dir() and runner.is_alive():
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.02)
    image.stop(container_name(job_name, "algo-1"), grace_s=60)  # `podman stop`: SIGTERM to PID 1
    runner.join(timeout=120)
    first = outcome["job"]

    assert first.result.exit_codes == {"algo-1": 143}, first.log[-3000:]
    failure = first.result.trees["algo-1"].failure.read_text()
    stopped_at = max(int(p.name) for p in (store / "steps").iterdir() if p.name.isdigit())
    assert 4 <= stopped_at < 80 and failure.startswith(
        f"training stopped by SIGTERM after step {stopped_at};"
    )
    assert not first.result.model_archive.exists()  # an unfinished run exports nothing

    second = train_in_image(
        image, tmp_path / "work", "image-resumed", channels={"train": corpus}, checkpoints=store
    )
    assert second.result.ok, second.log[-3000:]
    assert f"restored checkpoint {stopped_at}" in second.log
    resumed = _curves(second.result.trees["algo-1"].root)
    assert [s for s, _ in resumed["train_loss"]] == list(range(1, 81))
    assert resumed == _curves(trained_in_image.result.trees["algo-1"].root)  # every step, bit for bit


def test_a_damaged_newest_checkpoint_is_set_aside_and_the_job_resumes_from_the_one_before(
    image, corpus, tmp_path, trained_in_image
) -> None:
    store = tmp_path / "checkpoint-store"  # what S3 restores: the one-host run's last checkpoints
    shutil.copytree(trained_in_image.result.trees["algo-1"].checkpoints, store)
    newest = max(int(p.name) for p in (store / "steps").iterdir())
    for child in (store / "steps" / str(newest)).iterdir():  # emptied, as an interrupted upload leaves it
        shutil.rmtree(child) if child.is_dir() else child.unlink()
    job = train_in_image(
        image, tmp_path / "work", "image-damaged", channels={"train": corpus}, checkpoints=store
    )
    assert job.result.ok, job.log[-3000:]
    assert f"skipping damaged checkpoint {newest}: " in job.log
    assert f"restored checkpoint {newest - 4}" in job.log
    assert any(p.name.startswith(f"{newest}-") for p in (store / "damaged").iterdir())  # kept, synced back
    assert _curves(job.result.trees["algo-1"].root) == _curves(trained_in_image.result.trees["algo-1"].root)
