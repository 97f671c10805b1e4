"""Damaged checkpoints: the newest readable one is restored, the damaged ones kept aside, never deleted.

What a spot interruption during a checkpoint's upload to S3 leaves behind: a step directory emptied, its
array files cut short, or its metadata garbled. In-process against the Checkpointer here; a whole training
job resuming past a damaged checkpoint is in test_train_resume.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_llm.training.checkpointing import DAMAGED_DIR, STEPS_DIR, Checkpointer, CheckpointError


def _state(step: int) -> dict:
    return {"w": jnp.arange(4096.0) + step, "b": {"x": jnp.full((3, 4), float(step))}}


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


def _truncate_arrays(step_dir: Path) -> None:
    data = [p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
    assert data
    for path in data:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garble_metadata(step_dir: Path) -> None:
    (step_dir / "meta" / "metadata").write_text('{"history": [[1, ')
    (step_dir / "_CHECKPOINT_METADATA").write_text("\x00garbled")


@pytest.mark.parametrize("damage", [_empty, _truncate_arrays, _garble_metadata])
def test_the_newest_readable_checkpoint_is_restored_and_the_damaged_one_kept_aside(tmp_path, damage, capfd):
    steps = _saved(tmp_path)
    damage(steps / "12")
    restored = Checkpointer(tmp_path, keep=5).restore_latest(_abstract(_state(0)))

    assert restored.step == 8
    assert np.array_equal(restored.state["w"], _state(8)["w"])
    assert restored.meta["history"] == {"train_loss": [[8, 1.0]]}
    said = capfd.readouterr().out
    assert "skipping damaged checkpoint 12: " in said and f"kept at {tmp_path / DAMAGED_DIR}" in said
    (aside,) = (tmp_path / DAMAGED_DIR).iterdir()
    assert aside.name.startswith("12-") and not (steps / "12").exists()  # moved, not deleted
    assert sorted(p.name for p in steps.iterdir()) == ["4", "8"]


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
    _truncate_arrays(steps / "8")
    _garble_metadata(steps / "4")
    checkpointer = Checkpointer(tmp_path, keep=5)
    with pytest.raises(CheckpointError) as failure:
        checkpointer.restore_latest(_abstract(_state(0)))
    checkpointer.close()
    message = str(failure.value)
    assert message.startswith(f"no readable checkpoint in {steps}")
    assert "checkpoint 8: " in message and "checkpoint 4: " in message
    assert len(list((tmp_path / DAMAGED_DIR).iterdir())) == 2  # both kept


def test_no_checkpoint_at_all_is_a_fresh_start(tmp_path):
    assert Checkpointer(tmp_path, keep=5).restore_latest(_abstract(_state(0))) is None
