"""Orbax checkpoints under `checkpoints/steps/`: saved asynchronously, the last few kept, the latest restored.

A checkpoint holds the whole training state (parameters and optimizer state, whose step counter
drives the learning-rate schedule) plus JSON metadata: the completed step, which is also the data
position (batches are a pure function of seed and step), the seed (per-step randomness is derived
from seed and step, so no RNG stream needs saving beyond it) and the loss history for the curves.
SageMaker copies `/opt/ml/checkpoints` to S3 as files appear and back at the start of a restarted job.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

STEPS_DIR = "steps"


def _key_name(entry) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def flatten(state) -> dict[str, Any]:
    """{"0.blocks.0.attn.qkv.kernel.value": array, ...}: plain string keys that Orbax stores as they are."""
    return {".".join(_key_name(k) for k in path): leaf for path, leaf in jax.tree.leaves_with_path(state)}


def unflatten(like, flat: dict[str, Any]):
    """The inverse of `flatten`, shaped like the tree `like`."""
    keys = list(flatten(like))
    return jax.tree.unflatten(jax.tree.structure(like), [flat[k] for k in keys])


@dataclasses.dataclass
class Restored:
    """What a restart continues from."""

    state: Any
    step: int
    meta: dict[str, Any]


class Checkpointer:
    """Saves and restores the training state; one instance per run, used by every process."""

    def __init__(self, directory: Path, *, keep: int):
        self.directory = Path(directory) / STEPS_DIR
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=True)
        self._manager = ocp.CheckpointManager(self.directory.absolute(), options=options)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state, meta: dict[str, Any]) -> None:
        """Starts an asynchronous save; device arrays are copied to host before this returns."""
        if self._manager.latest_step() == step:
            return  # already saved at this step (e.g. SIGTERM right after a periodic save)
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(flatten(state)),
                meta=ocp.args.JsonSave({**meta, "step": step}),
            ),
            force=True,
        )

    def restore_latest(self, abstract_state) -> Restored | None:
        """The newest checkpoint, placed with the shardings of `abstract_state` (ShapeDtypeStructs); None if none."""
        step = self._manager.latest_step()
        if step is None:
            return None
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(flatten(abstract_state)),
                meta=ocp.args.JsonRestore(),
            ),
        )
        return Restored(unflatten(abstract_state, restored["state"]), step, dict(restored["meta"]))

    def wait(self) -> None:
        """Blocks until every pending save is on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()
