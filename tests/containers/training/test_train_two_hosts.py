"""Two hosts as two local processes (jax.distributed, gloo): the same losses as one process, one writer."""

import json
import shutil
import signal
import time

from tests.support import free_port
from tests.support import TINY_HYPERPARAMETERS, start_training, write_training_tree

HOSTS = ("algo-1", "algo-2")


def _start_hosts(tmp_path, hyperparameters):
    """One /opt/ml tree and one trainer per host, as on SageMaker; JAX_COORDINATOR_ADDRESS replaces algo-1:7777."""
    address = f"127.0.0.1:{free_port()}"
    roots, processes = [], []
    for host in HOSTS:
        root = write_training_tree(tmp_path / host, hyperparameters, hosts=HOSTS, current_host=host)
        roots.append(root)
        processes.append(start_training(root, tmp_path / f"{host}.log", JAX_COORDINATOR_ADDRESS=address))
    return roots, processes


def _kill_leftovers(processes) -> None:
    for p in processes:
        if p.poll() is None:
            p.kill()

def _train_to_the_end(tmp_path, hyperparameters):
    """Both hosts' trees and logs once both exited 0."""
    roots, processes = _start_hosts(tmp_path, hyperparameters)
    try:
        codes = [p.wait(timeout=300) for p in processes]
    finally:
        _kill_leftovers(processes)
    logs = [(tmp_path / f"{host}.log").read_text() for host in HOSTS]
    assert codes == [0, 0], "\n".join(log[-2000:] for log in logs)
    return roots, logs


def test_two_hosts_match_one_process_with_the_same_global_batch(tmp_path, tiny_training_run):
    roots, logs = _train_to_the_end(tmp_path, TINY_HYPERPARAMETERS)
    assert "2 process(es), 2 device(s)" in logs[0]

    single = json.loads((tiny_training_run.root / "output" / "data" / "loss_curves.json").read_text())
    multi = json.loads((roots[0] / "output" / "data" / "loss_curves.json").read_text())
    for name in ("train_loss", "val_loss"):
        assert [s for s, _ in multi[name]] == [s for s, _ in single[name]]
        for (_, a), (_, b) in zip(multi[name], single[name]):
            assert abs(a - b) <= 1e-5 * abs(b), (name, multi[name], single[name])

    # Only the first host writes the model, the curves and the checkpoints.
    assert (roots[0] / "model" / "params.npz").is_file()
    assert not (roots[1] / "model").exists() or not any((roots[1] / "model").iterdir())
    assert not (roots[1] / "output" / "data").exists()
    assert (roots[0] / "checkpoints" / "steps" / "24").is_dir()


def test_sigterm_stops_both_hosts_at_the_same_step_with_one_checkpoint(tmp_path):
    """SageMaker signals every host; JAX's preemption sync picks one step for all, the first host saves it."""
    hyperparameters = {**TINY_HYPERPARAMETERS, "max_steps": "300", "log_every": "10", "eval_every": "0",
                       "checkpoint_every": "0"}
    roots, processes = _start_hosts(tmp_path, hyperparameters)
    try:
        deadline = time.monotonic() + 240
        while "step 10/300" not in (tmp_path / "algo-1.log").read_text():
            running = time.monotonic() < deadline and processes[0].poll() is None
            assert running, (tmp_path / "algo-1.log").read_text()
            time.sleep(0.05)
        for process in processes:
            process.send_signal(signal.SIGTERM)
        codes = [p.wait(timeout=180) for p in processes]
    finally:
        _kill_leftovers(processes)
    assert codes == [143, 143], (tmp_path / "algo-1.log").read_text()[-2000:]
    failures = [(root / "output" / "failure").read_text() for root in roots]
    steps = {int(text.split("after step ")[1].split(";")[0]) for text in failures}
    assert len(steps) == 1 and 10 <= (step := steps.pop()) < 300  # the same step on both hosts
    assert "saved by the first host" in failures[1]
    assert (roots[0] / "checkpoints" / "steps" / str(step)).is_dir()
    assert not (roots[0] / "model" / "params.npz").exists()


def test_hosts_agree_on_the_step_they_restore_when_the_newest_checkpoint_is_damaged(tmp_path, tiny_training_run):
    """The first host reads (and falls back), the others take its step: their own copies are never read."""
    for host in HOSTS:
        shutil.copytree(tiny_training_run.root / "checkpoints", tmp_path / host / "checkpoints")
    for path in (tmp_path / "algo-1" / "checkpoints" / "steps" / "24" / "state").rglob("*"):
        if path.is_file() and path.parent.name == "d":
            path.write_bytes(path.read_bytes()[:10])  # the first host's newest: array files cut short
    shutil.rmtree(tmp_path / "algo-2" / "checkpoints" / "steps" / "12")  # the other host's copy: irrelevant
    roots, logs = _train_to_the_end(tmp_path, TINY_HYPERPARAMETERS)
    assert "skipping damaged checkpoint 24: " in logs[0] and "restored checkpoint 12" in logs[0]
    single = json.loads((tiny_training_run.root / "output" / "data" / "loss_curves.json").read_text())
    multi = json.loads((roots[0] / "output" / "data" / "loss_curves.json").read_text())
    assert [s for s, _ in multi["train_loss"]] == [s for s, _ in single["train_loss"]]  # 13..24 trained again
    for (_, a), (_, b) in zip(multi["train_loss"], single["train_loss"], strict=True):
        assert abs(a - b) <= 1e-5 * abs(b)
