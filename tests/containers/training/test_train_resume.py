"""Kill and resume: SIGTERM after the first checkpoint, then a restart, reproduces the uninterrupted run."""

import json
import shutil
import signal
import time

import numpy as np

from tests.support import TINY_HYPERPARAMETERS, run_training, start_training, write_training_tree

# Per-step losses (log_every 1), a checkpoint every 4 steps; 80 steps leave plenty of run after the first.
HYPERPARAMETERS = {
    **TINY_HYPERPARAMETERS,
    "max_steps": "80",
    "log_every": "1",
    "eval_every": "0",
    "checkpoint_every": "4",
    "eval_batches": "1",
}


def _checkpoint_steps(root):
    return sorted(int(p.name) for p in (root / "checkpoints" / "steps").glob("*") if p.name.isdigit())


def test_sigterm_checkpoints_exits_and_restart_reproduces_uninterrupted_losses(tmp_path):
    reference = write_training_tree(tmp_path / "reference", HYPERPARAMETERS)
    resumed = write_training_tree(tmp_path / "resumed", HYPERPARAMETERS)
    scratch = tmp_path / "tmp"  # TMPDIR of the stopped and the resumed job: they must leave it empty
    scratch.mkdir()
    reference_run = start_training(reference, tmp_path / "reference.log")  # beside the interrupted one
    first = start_training(resumed, tmp_path / "first.log", TMPDIR=str(scratch))
    deadline = time.monotonic() + 240
    while not (resumed / "checkpoints" / "steps" / "4").is_dir() and first.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint within 240 s"
        time.sleep(0.02)
    first.send_signal(signal.SIGTERM)
    code = first.wait(timeout=120)
    log = (tmp_path / "first.log").read_text()

    assert code == 143, log[-3000:]  # 128 + SIGTERM: not completed, so nothing may take it for a finished job
    failure = (resumed / "output" / "failure").read_text()
    assert failure.startswith("training stopped by SIGTERM after step ")
    stopped_at = _checkpoint_steps(resumed)[-1]
    assert 4 <= stopped_at < 80 and f"after step {stopped_at};" in failure
    assert not (resumed / "model" / "params.npz").exists()  # no final export of an unfinished run

    assert list(scratch.iterdir()) == []  # the tokenized data's scratch went with the SIGTERM
    code, log = run_training(resumed, TMPDIR=str(scratch))
    assert code == 0, log[-3000:]
    assert f"restored checkpoint {stopped_at}" in log
    assert list(scratch.glob("jax-llm-data-*")) == []
    assert not (resumed / "output" / "failure").exists()
    assert reference_run.wait(timeout=240) == 0

    curves = [
        json.loads((root / "output" / "data" / "loss_curves.json").read_text())
        for root in (reference, resumed)
    ]
    assert [s for s, _ in curves[1]["train_loss"]] == list(range(1, 81))
    assert curves[1] == curves[0]  # every step's loss, bit for bit
    with np.load(reference / "model" / "params.npz") as a, np.load(resumed / "model" / "params.npz") as b:
        assert all(np.array_equal(a[k], b[k]) for k in a.files)


def test_a_job_resumes_past_a_damaged_newest_checkpoint_and_reproduces_the_run(tmp_path, tiny_training_run):
    """The tiny run saved steps 12 and 24; with 24 damaged, a restart trains 13..24 again from 12."""
    root = write_training_tree(tmp_path / "restarted", TINY_HYPERPARAMETERS)
    shutil.copytree(tiny_training_run.root / "checkpoints", root / "checkpoints")
    (commit,) = (root / "checkpoints" / "steps" / "24").glob("part-*.json")
    commit.write_text('{"format": ')  # cut short

    code, log = run_training(root)
    assert code == 0, log[-3000:]
    assert "skipping damaged checkpoint 24: " in log and "restored checkpoint 12" in log
    (aside,) = (root / "checkpoints" / "damaged").iterdir()
    assert (aside / commit.name).read_text() == '{"format": '  # the user's bytes, kept as they were
    assert _curves(root) == _curves(tiny_training_run.root)
    assert _checkpoint_steps(root) == [12, 24]  # 24 saved anew


def _curves(root):
    return json.loads((root / "output" / "data" / "loss_curves.json").read_text())
