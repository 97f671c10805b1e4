"""Orbax checkpoints in `checkpoints/steps/<step>`: saved asynchronously, the last few kept, latest restored.

A checkpoint holds the whole training state (parameters and optimizer state, whose step counter
drives the learning-rate schedule) plus JSON metadata: the completed step, which is also the data
position (batches are a pure function of seed and step), the seed, the hyperparameters and the loss
history for the curves. The model has no dropout, so initialisation and data order are the only
randomness, and both are derived from the seed (and the step): no RNG stream needs saving beyond it.
SageMaker copies `/opt/ml/checkpoints` to S3 as files appear and back at the start of a restarted job.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec as P

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
    """Saves and restores the training state; one instance per run, created on every process.

    One process: Orbax saves the (possibly sharded) arrays directly. Several hosts: on SageMaker each
    host's `/opt/ml/checkpoints` is its own local disk, synced to S3, not a shared file system, so a
    multi-host Orbax save (which assumes one) cannot be used. Instead the state is gathered
    (replicated over the mesh, on device) and the first host alone writes the whole checkpoint; on
    restore the first host reads it and broadcasts it to the others. Costs a full copy of the state
    per device while saving, which the FSDP sizes here afford.
    """

    def __init__(self, directory: Path, *, keep: int):
        self.directory = Path(directory) / STEPS_DIR
        self._multi = jax.process_count() > 1
        self._primary = jax.process_index() == 0
        self._manager = None
        if self._primary:
            multiprocessing = ocp.options.MultiprocessingOptions(
                primary_host=0, active_processes={0} if self._multi else None)
            self.directory.mkdir(parents=True, exist_ok=True)  # Orbax's create=True refuses active_processes
            options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=False,
                                                   enable_async_checkpointing=True,
                                                   multiprocessing_options=multiprocessing)
            self._manager = ocp.CheckpointManager(self.directory.absolute(), options=options)

    def latest_step(self) -> int | None:
        """The newest saved step, the same on every process; None before the first save."""
        step = self._manager.latest_step() if self._primary else None
        if self._multi:
            step = int(multihost_utils.broadcast_one_to_all(np.int64(-1 if step is None else step)))
            step = None if step < 0 else step
        return step

    def save(self, step: int, state, meta: dict[str, Any]) -> None:
        """Starts an asynchronous save (every process calls it); arrays reach host memory before return."""
        flat = flatten(state)
        if self._multi:
            mesh = next(iter(flat.values())).sharding.mesh
            gather = jax.jit(lambda t: t, out_shardings=NamedSharding(mesh, P()))  # all-gathers FSDP shards
            flat = gather(flat)
            flat = {k: np.asarray(v.addressable_data(0)) for k, v in flat.items()}  # this host's full copy
        if not self._primary or self._manager.latest_step() == step:
            return  # not the writer, or already saved at this step (SIGTERM right after a periodic save)
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(flat),
                meta=ocp.args.JsonSave({**meta, "step": step}),
            ),
            force=True,
        )

    def restore_latest(self, abstract_state) -> Restored | None:
        """The newest checkpoint, placed as `abstract_state` (ShapeDtypeStructs + shardings); None if none."""
        step = self.latest_step()
        if step is None:
            return None
        target = flatten(abstract_state)
        if not self._multi:
            restored = self._manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
            return Restored(unflatten(abstract_state, restored["state"]), step, dict(restored["meta"]))
        host_target = {k: np.zeros(v.shape, v.dtype) for k, v in target.items()}
        if self._primary:
            restored = self._manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(host_target), meta=ocp.args.JsonRestore()))
            host_state, meta_bytes = restored["state"], json.dumps(restored["meta"]).encode()
        else:
            host_state, meta_bytes = host_target, b""
        host_state = multihost_utils.broadcast_one_to_all(host_state)
        meta = json.loads(_broadcast_bytes(meta_bytes))
        placed = {k: jax.make_array_from_callback(v.shape, v.sharding, lambda i, a=host_state[k]: a[i])
                  for k, v in target.items()}
        return Restored(unflatten(abstract_state, placed), step, meta)

    def wait(self) -> None:
        """Blocks until every pending save is on disk."""
        if self._manager is not None:
            self._manager.wait_until_finished()

    def close(self) -> None:
        """Finishes pending saves and releases Orbax's threads."""
        if self._manager is not None:
            self._manager.close()


def _broadcast_bytes(data: bytes) -> bytes:
    """Process 0's bytes on every process (lengths differ, so the length goes first)."""
    length = int(multihost_utils.broadcast_one_to_all(np.int64(len(data))))
    buffer = np.zeros(length, np.uint8)
    if jax.process_index() == 0:
        buffer[:] = np.frombuffer(data, np.uint8)
    return bytes(multihost_utils.broadcast_one_to_all(buffer))
