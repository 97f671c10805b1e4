"""Damaged checkpoints: the newest complete one is restored, the damaged ones kept aside, never deleted.

What a spot interruption during a checkpoint's upload to S3 leaves behind: a step directory emptied, a
host's part missing, its data file cut short, or its commit file garbled. In-process against the
Checkpointer here (one process, the arrays sharded over this process's devices); whole jobs resuming
past a damaged checkpoint, on one host and on several, are in test_train_resume.py and
test_checkpoints_at_scale.py. Also: the previous format (one Orbax checkpoint) still restores on one host.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jax_llm.training import checkpoint_parts as parts
from jax_llm.training.checkpointing import DAMAGED_DIR, STEPS_DIR, Checkpointer, CheckpointError, flatten


def _mesh() -> Mesh:
    return Mesh(np.array(jax.devices()), ("d",))


def _state(step: int) -> dict:
    """A sharded matrix, a replicated vector, a bfloat16 scalar: the kinds of leaf a training state has."""
    rows = NamedSharding(_mesh(), P("d"))
    w = jax.device_put(jnp.arange(64.0 * 8).reshape(64, 8) + step, rows)
    return {"w": w, "b": {"x": jnp.full((3, 4), float(step))}, "n": jnp.asarray(step, jnp.bfloat16)}


def _abstract(state) -> dict:
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), state)


def _saved(directory: Path, steps=(4, 8, 12)) -> Path:
    checkpointer = Checkpointer(directory, keep=5)
    for step in steps:
        checkpointer.save(step, _state(step), {"history": {"train_loss": [[step, 1.0]]}})
    checkpointer.close()
    return directory / STEPS_DIR


def _empty(step_dir: Path) -> None:
    for child in step_dir.iterdir():
        shutil.rmtree(child) if child.is_dir() else child.unlink()


def _cut_data(step_dir: Path) -> None:
    (data,) = step_dir.glob("part-*.bin")
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])


def _garble_commit(step_dir: Path) -> None:
    (commit,) = step_dir.glob("part-*.json")
    commit.write_text('{"format": "jax-llm-checkpoint-parts-1", "blocks": [')


def _lose_commit(step_dir: Path) -> None:
    (commit,) = step_dir.glob("part-*.json")
    commit.unlink()  # the data arrived, the commit never did: the save did not finish


@pytest.mark.parametrize("damage", [_empty, _cut_data, _garble_commit, _lose_commit])
def test_the_newest_readable_checkpoint_is_restored_and_the_damaged_one_kept_aside(tmp_path, damage, capfd):
    steps = _saved(tmp_path)
    damage(steps / "12")
    restored = Checkpointer(tmp_path, keep=5).restore_latest(_abstract(_state(0)))

    assert restored.step == 8
    for name, value in flatten(_state(8)).items():
        got = flatten(restored.state)[name]
        assert got.sharding == value.sharding and np.array_equal(got, value), name
    assert restored.meta == {"history": {"train_loss": [[8, 1.0]]}, "step": 8}
    said = capfd.readouterr().out
    assert "skipping damaged checkpoint 12: " in said and f"kept at {tmp_path / DAMAGED_DIR}" in said
    (aside,) = (tmp_path / DAMAGED_DIR).iterdir()
    assert aside.name.startswith("12-") and not (steps / "12").exists()  # moved, not deleted
    assert sorted(p.name for p in steps.iterdir()) == ["4", "8"]


def test_each_block_is_written_once_and_a_replicated_array_by_one_device(tmp_path):
    steps = _saved(tmp_path, steps=(4,))
    (commit,) = (steps / "4").glob("part-*.json")
    blocks = json.loads(commit.read_text())["blocks"]
    w = [b for b in blocks if b["name"] == "w"]
    assert len(w) == len(jax.devices())  # one block per device that holds a distinct slice
    assert sum((b["bounds"][0][1] - b["bounds"][0][0]) for b in w) == 64
    assert [b["bounds"] for b in blocks if b["name"] == "b.x"] == [[[0, 3], [0, 4]]]  # replicated: once
    state_bytes = sum(x.nbytes for x in jax.tree.leaves(_state(4)))
    assert (steps / "4" / f"{parts.part_stem(0, 1)}.bin").stat().st_size == state_bytes


def test_keep_prunes_the_oldest_steps(tmp_path):
    checkpointer = Checkpointer(tmp_path, keep=2)
    for step in (4, 8, 12):
        checkpointer.save(step, _state(step), {})
    checkpointer.close()
    assert sorted(p.name for p in (tmp_path / STEPS_DIR).iterdir()) == ["12", "8"]


def test_a_restart_saves_the_step_again_where_the_damaged_one_was(tmp_path):
    steps = _saved(tmp_path)
    _empty(steps / "12")
    checkpointer = Checkpointer(tmp_path, keep=5)
    assert checkpointer.restore_latest(_abstract(_state(0))).step == 8
    checkpointer.save(12, _state(12), {"history": {}})
    checkpointer.close()
    again = Checkpointer(tmp_path, keep=5).restore_latest(_abstract(_state(0)))
    assert again.step == 12 and np.array_equal(again.state["w"], _state(12)["w"])


def test_when_no_checkpoint_can_be_read_the_job_fails_naming_the_directory_and_each_step(tmp_path):
    steps = _saved(tmp_path, steps=(4, 8))
    _cut_data(steps / "8")
    _garble_commit(steps / "4")
    checkpointer = Checkpointer(tmp_path, keep=5)
    with pytest.raises(CheckpointError) as failure:
        checkpointer.restore_latest(_abstract(_state(0)))
    checkpointer.close()
    message = str(failure.value)
    assert message.startswith(f"no readable checkpoint in {steps}")
    assert "checkpoint 8: incomplete: part-00000-of-00001.bin holds " in message
    assert "checkpoint 4: incomplete: part-00000-of-00001.json is not valid JSON" in message
    assert len(list((tmp_path / DAMAGED_DIR).iterdir())) == 2  # both kept


def test_another_model_shape_is_refused_not_misread(tmp_path):
    _saved(tmp_path, steps=(4,))
    other = {**_state(0), "w": jnp.zeros((32, 8))}
    with pytest.raises(CheckpointError, match=r"w is float32\[64, 8\] in the checkpoint, this run expects "):
        Checkpointer(tmp_path, keep=5).restore_latest(_abstract(other))


def test_no_checkpoint_at_all_is_a_fresh_start(tmp_path):
    assert Checkpointer(tmp_path, keep=5).restore_latest(_abstract(_state(0))) is None


def test_a_checkpoint_of_the_previous_format_restores_on_one_host(tmp_path):
    """What jax-llm wrote before per-host parts: an Orbax Composite of the flat state and JSON metadata."""
    old = {k: np.asarray(v) for k, v in flatten(_state(6)).items()}
    manager = ocp.CheckpointManager(
        (tmp_path / STEPS_DIR).absolute(), options=ocp.CheckpointManagerOptions(create=True)
    )
    manager.save(
        6,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(old), meta=ocp.args.JsonSave({"history": {"val_loss": []}, "step": 6})
        ),
    )
    manager.wait_until_finished()
    manager.close()
    restored = Checkpointer(tmp_path, keep=5).restore_latest(_abstract(_state(0)))
    assert restored.step == 6 and restored.meta == {"history": {"val_loss": []}, "step": 6}
    assert np.array_equal(restored.state["w"], _state(6)["w"])
    assert restored.state["w"].sharding == _state(0)["w"].sharding
