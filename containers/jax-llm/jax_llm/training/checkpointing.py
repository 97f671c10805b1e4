"""Orbax checkpoints in `checkpoints/steps/<step>`: saved asynchronously, the last few kept, latest restored.

A checkpoint holds the whole training state (parameters and optimizer state, whose step counter
drives the learning-rate schedule) plus JSON metadata: the completed step, which is also the data
position (batches are a pure function of seed and step), the seed, the hyperparameters and the loss
history for the curves. The model has no dropout, so initialisation and data order are the only
randomness, and both are derived from the seed (and the step): no RNG stream needs saving beyond it.
SageMaker copies `/opt/ml/checkpoints` to S3 as files appear and back at the start of a restarted job.

A checkpoint can arrive damaged (a spot interruption while it was being uploaded leaves a step directory
empty or its files cut short). Restoring tries the newest first and falls back to older ones; each one
that cannot be read is said in the log and set aside under `checkpoints/damaged/`, never deleted. Only
when none can be read does the job fail, naming the directory and why each step failed.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec as P

STEPS_DIR = "steps"
DAMAGED_DIR = "damaged"  # beside steps/: where unreadable checkpoints are kept for a person to look at


class CheckpointError(RuntimeError):
    """Checkpoints exist but none can be restored: the job must not silently start again from step 0."""


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
        """The newest readable checkpoint, placed as `abstract_state` (ShapeDtypeStructs + shardings).

        None when there is no checkpoint; CheckpointError when there are some and none can be read. With
        several hosts the first host reads (falling back as needed) and every host gets its step and state.
        """
        target = flatten(abstract_state)
        if not self._multi:
            found = self._restore_newest_readable(target)
            if found is None:
                return None
            step, restored = found
            return Restored(unflatten(abstract_state, restored["state"]), step, dict(restored["meta"]))
        host_target = {k: np.zeros(v.shape, v.dtype) for k, v in target.items()}
        found, failure = None, ""
        if self._primary:
            try:
                found = self._restore_newest_readable(host_target)
            except CheckpointError as error:
                failure = str(error)
        # The step every host continues from: -1 for none, -2 when none could be read (all fail alike).
        step = found[0] if found else (-2 if failure else -1)
        step = int(multihost_utils.broadcast_one_to_all(np.int64(step)))
        if step == -2:
            raise CheckpointError(_broadcast_bytes(failure.encode()).decode()
                                  or "the first host found no readable checkpoint")
        if step == -1:
            return None
        host_state = found[1]["state"] if self._primary else host_target
        meta_bytes = json.dumps(found[1]["meta"]).encode() if self._primary else b""
        host_state = multihost_utils.broadcast_one_to_all(host_state)
        meta = json.loads(_broadcast_bytes(meta_bytes))
        placed = {k: jax.make_array_from_callback(v.shape, v.sharding, lambda i, a=host_state[k]: a[i])
                  for k, v in target.items()}
        return Restored(unflatten(abstract_state, placed), step, meta)

    def _restore_newest_readable(self, target: dict[str, Any]) -> tuple[int, Any] | None:
        """(step, Orbax's restored Composite) of the newest checkpoint that reads whole; primary only.

        Step directories Orbax does not list (emptied, or never finished) and checkpoints that fail to
        read are set aside, so that a later save of the same step cannot collide with them.
        """
        listed = set(self._manager.all_steps())
        on_disk = {int(p.name) for p in self.directory.iterdir() if p.is_dir() and p.name.isdigit()}
        skipped: list[str] = []
        for step in sorted(on_disk - listed, reverse=True):
            skipped.append(self._set_aside(step, "not a complete checkpoint (no Orbax metadata)"))
        for step in sorted(listed, reverse=True):
            try:
                restored = self._manager.restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
            except Exception as error:  # noqa: BLE001 - any read failure means this step is unusable
                reason = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error) else ''}"
                skipped.append(self._set_aside(step, reason[:300]))
                continue
            if skipped:
                self._manager.reload()  # forget the steps set aside
            return step, restored
        if skipped:
            raise CheckpointError(f"no readable checkpoint in {self.directory} (each was set aside under "
                                  f"{self.directory.parent / DAMAGED_DIR}): " + "; ".join(skipped))
        return None

    def _set_aside(self, step: int, reason: str) -> str:
        """Moves steps/<step> under damaged/ (kept, never deleted) and says so; returns the reason."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        aside = self.directory.parent / DAMAGED_DIR / f"{step}-{stamp}"
        for n in range(1, 1000):  # the same step set aside twice within a second (S3 restored it again)
            if not aside.exists():
                break
            aside = aside.with_name(f"{step}-{stamp}-{n}")
        aside.parent.mkdir(parents=True, exist_ok=True)
        (self.directory / str(step)).rename(aside)
        said = f"checkpoint {step}: {reason}"
        print(f"skipping damaged {said}; kept at {aside}", flush=True)
        return said

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
