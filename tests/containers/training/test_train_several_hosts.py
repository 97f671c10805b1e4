"""Several hosts as local processes (jax.distributed, gloo; 2 CPU devices each): checkpoints never gather.

Each host has its own /opt/ml tree, as on SageMaker, and writes its own part of every checkpoint. A restart
gets the union of all hosts' parts in every host's tree: what SageMaker's download of the one checkpoint
S3 prefix does. Runs are shared: one uninterrupted run on 2 hosts and one on 4 (60 steps, a checkpoint
every 20), then restarts from their checkpoints on the other host count (elastic resume, past a damaged
newest step), and one SIGTERM on 2 hosts resumed on 2.
"""

import json
import math
import shutil
import signal
import time
from pathlib import Path

import pytest

from local_mode.runner import free_port
from tests.support import TINY_HYPERPARAMETERS, start_training, write_training_tree

HYPERPARAMETERS = {
    **TINY_HYPERPARAMETERS,
    "max_steps": "60",
    "log_every": "1",
    "eval_every": "0",
    "eval_batches": "1",
    "checkpoint_every": "20",
    "keep_checkpoints": "3",
    "fsdp": "true",
}
DEVICES_PER_HOST = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}


def _hosts(n: int) -> tuple[str, ...]:
    return tuple(f"algo-{i + 1}" for i in range(n))


def _start(tmp_path: Path, n_hosts: int, hyperparameters=HYPERPARAMETERS, checkpoints: Path | None = None):
    """One /opt/ml tree and one trainer per host; `checkpoints`: copied into every host's tree first."""
    address = f"127.0.0.1:{free_port()}"
    roots, processes = [], []
    for host in _hosts(n_hosts):
        root = write_training_tree(tmp_path / host, hyperparameters, hosts=_hosts(n_hosts), current_host=host)
        if checkpoints is not None:
            shutil.copytree(checkpoints, root / "checkpoints")
        roots.append(root)
        processes.append(
            start_training(
                root, tmp_path / f"{host}.log", JAX_COORDINATOR_ADDRESS=address, **DEVICES_PER_HOST
            )
        )
    return roots, processes


def _wait(tmp_path: Path, processes, expected: int = 0, timeout: float = 400) -> list[str]:
    try:
        codes = [p.wait(timeout=timeout) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
    logs = [(tmp_path / f"{host}.log").read_text() for host in _hosts(len(processes))]
    assert codes == [expected] * len(processes), "\n".join(log[-2500:] for log in logs)
    return logs


def _union(roots: list[Path], into: Path) -> Path:
    """Every host's checkpoints/ merged into one tree: the S3 prefix, as a restarted job downloads it."""
    for root in roots:
        shutil.copytree(root / "checkpoints", into, dirs_exist_ok=True)
    return into


def _curves(root: Path) -> dict:
    return json.loads((root / "output" / "data" / "loss_curves.json").read_text())


def _close(a: dict, b: dict, rel: float = 1e-5) -> None:
    for name in ("train_loss", "val_loss"):
        assert [s for s, _ in a[name]] == [s for s, _ in b[name]], name
        for (step, x), (_, y) in zip(a[name], b[name]):
            assert abs(x - y) <= rel * abs(y), (name, step, x, y)


@pytest.fixture(scope="module")
def two_hosts(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("two-hosts")
    roots, processes = _start(tmp_path, 2)
    return roots, _wait(tmp_path, processes)


@pytest.fixture(scope="module")
def four_hosts(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("four-hosts")
    roots, processes = _start(tmp_path, 4)
    return roots, _wait(tmp_path, processes)


@pytest.mark.parametrize("run", ["two_hosts", "four_hosts"])
def test_each_host_writes_only_its_own_part_about_one_over_hosts_of_the_state(run, request):
    roots, logs = request.getfixturevalue(run)
    n = len(roots)
    assert f"{n} process(es), {2 * n} device(s)" in logs[0]
    for step in (20, 40, 60):
        commits, sizes = [], []
        for i, root in enumerate(roots):
            own = sorted(p.name for p in (root / "checkpoints" / "steps" / str(step)).iterdir())
            stem = f"part-{i:05d}-of-{n:05d}"
            assert own == [f"{stem}.bin", f"{stem}.json"]  # its own part, nothing of the others'
            step_dir = root / "checkpoints" / "steps" / str(step)
            commits.append(json.loads((step_dir / f"{stem}.json").read_text()))
            sizes.append((step_dir / f"{stem}.bin").stat().st_size)
        arrays = {b["name"]: (b["shape"], b["dtype"]) for c in commits for b in c["blocks"]}
        total = sum(
            math.prod(shape) * (2 if dtype == "bfloat16" else 4 if "32" in dtype else 8)
            for shape, dtype in arrays.values()
        )
        assert sum(sizes) == total  # every block once over the job: nothing written twice
        assert max(sizes) <= 1.25 * total / n, (sizes, total)  # and spread: about 1/hosts each
        assert [c["data_bytes"] for c in commits] == sizes  # the bytes each host held to write them
        assert commits[0]["meta"]["step"] == step and "meta" not in commits[-1]
    assert not (roots[-1] / "model").exists() or not any((roots[-1] / "model").iterdir())  # host 0 exports


def test_two_and_four_hosts_train_alike(two_hosts, four_hosts):
    _close(_curves(four_hosts[0][0]), _curves(two_hosts[0][0]))


@pytest.mark.parametrize(
    ("trained", "resumed_on", "damage"), [("four_hosts", 2, "cut"), ("two_hosts", 4, "lost")]
)
def test_elastic_resume_on_another_host_count_past_an_incomplete_newest_step(
    trained, resumed_on, damage, tmp_path, request, two_hosts, four_hosts
):
    """The newest step misses one host's part (lost, or its file cut short mid-upload): 40 is restored."""
    roots, _ = request.getfixturevalue(trained)
    union = _union(roots, tmp_path / "s3-prefix")
    last = f"part-{len(roots) - 1:05d}-of-{len(roots):05d}"
    if damage == "cut":
        data = union / "steps" / "60" / f"{last}.bin"
        data.write_bytes(data.read_bytes()[:100])
    else:
        for path in (union / "steps" / "60").glob(f"{last}.*"):
            path.unlink()
    reference = (two_hosts if resumed_on == 2 else four_hosts)[0][0]
    new_roots, processes = _start(tmp_path / "restart", resumed_on, checkpoints=union)
    logs = _wait(tmp_path / "restart", processes)
    for log in logs:
        assert "skipping damaged checkpoint 60: incomplete: " in log
    assert "restored checkpoint 40" in logs[0] and f"{resumed_on} process(es)" in logs[0]
    _close(_curves(new_roots[0]), _curves(reference))  # 1..40 from the other size's run, 41..60 trained here
    assert sorted(p.name for p in (new_roots[0] / "checkpoints" / "steps").iterdir()) == ["20", "40", "60"]


def test_sigterm_on_every_host_then_a_restart_reproduces_the_uninterrupted_losses(tmp_path, two_hosts):
    """SageMaker signals every host; JAX's preemption sync picks one step for all; each saves its part."""
    roots, processes = _start(tmp_path / "first", 2)
    try:
        deadline = time.monotonic() + 300
        while "step 3/60" not in (tmp_path / "first" / "algo-1.log").read_text():
            running = time.monotonic() < deadline and processes[0].poll() is None
            assert running, (tmp_path / "first" / "algo-1.log").read_text()[-3000:]
            time.sleep(0.02)
        for process in processes:
            process.send_signal(signal.SIGTERM)
    finally:
        _wait(tmp_path / "first", processes, expected=143)
    failures = [(root / "output" / "failure").read_text() for root in roots]
    steps = {int(text.split("after step ")[1].split(";")[0]) for text in failures}
    assert len(steps) == 1 and 3 <= (step := steps.pop()) < 60  # the same step on both hosts
    assert "(this host's part) saved in " in failures[1]
    assert not (roots[0] / "model" / "params.npz").exists()

    union = _union(roots, tmp_path / "s3-prefix")
    resumed, processes = _start(tmp_path / "resumed", 2, checkpoints=union)
    logs = _wait(tmp_path / "resumed", processes)
    assert f"restored checkpoint {step}" in logs[0]
    assert _curves(resumed[0]) == _curves(two_hosts[0][0])  # every step's loss, bit for bit


def test_the_exported_model_is_the_last_checkpoints_parameters_streamed_from_every_host(four_hosts, tmp_path):
    """Export gathers one parameter at a time; what host 0 wrote equals the parameters all 4 parts hold."""
    import numpy as np

    from jax_llm.training.checkpoint_parts import StoredStep

    roots, _ = four_hosts
    stored = StoredStep(_union(roots, tmp_path / "s3-prefix") / "steps" / "60")
    with np.load(roots[0] / "model" / "params.npz") as exported:
        assert exported.files
        for key in exported.files:
            name = f"0.{key}.value"  # the model's half of the (model, optimizer) state
            whole = stored.read(name, tuple(slice(None) for _ in stored.arrays[name][0]))
            assert np.array_equal(exported[key], whole), key


def test_the_previous_format_on_several_hosts_fails_naming_the_format_and_the_way_out(tmp_path):
    """What jax-llm wrote before per-host parts (one Orbax checkpoint, by the first host) restores on one."""
    import numpy as np
    import orbax.checkpoint as ocp

    steps = tmp_path / "s3-prefix" / "steps"
    manager = ocp.CheckpointManager(steps.absolute(), options=ocp.CheckpointManagerOptions(create=True))
    manager.save(
        20,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave({"w": np.zeros(4, np.float32)}), meta=ocp.args.JsonSave({"step": 20})
        ),
    )
    manager.wait_until_finished()
    manager.close()
    roots, processes = _start(tmp_path / "restart", 2, checkpoints=tmp_path / "s3-prefix")
    _wait(tmp_path / "restart", processes, expected=1)
    for root in roots:
        failure = (root / "output" / "failure").read_text()
        assert "checkpoint 20 in " in failure and "is in the previous format (one Orbax checkpoint" in failure
        assert "resume it once on one instance (instance_count 1)" in failure
        assert (root / "checkpoints" / "steps" / "20" / "state").is_dir()  # left as it was
