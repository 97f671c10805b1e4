"""Checkpoints in `checkpoints/steps/<step>/`: each host writes its own part; the newest whole step restores.

A checkpoint holds the whole training state (parameters and optimizer state, whose step counter
drives the learning-rate schedule) plus JSON metadata: the completed step, which is also the data
position (batches are a pure function of seed and step), the seed, the hyperparameters and the loss
history for the curves. The model has no dropout, so initialisation and data order are the only
randomness, and both are derived from the seed (and the step): no RNG stream needs saving beyond it.

Nothing is gathered: every host copies the blocks of the state that it owns to host memory and writes
them, in the background, as its own part of the step (`checkpoint_parts`). On SageMaker each host's
`/opt/ml/checkpoints` is its own local disk, synced to the job's one checkpoint S3 prefix; the part
files are named per host, so the prefix ends up holding every host's part of every step, and a
restarted job gets the whole prefix on every host. A step counts only when every host's part of it is
there and committed. Restoring reads the union of the parts and builds each device's block from the
blocks that overlap it, so a job restarted on another number of hosts (or another mesh) resumes from
the same step: elastic resume.

A checkpoint can arrive damaged (a spot interruption while it was being uploaded leaves a part missing
or its file cut short). The hosts agree on the newest step that every one of them can read; each step
that cannot be read, and any newer one, is said in the log and set aside under `checkpoints/damaged/`,
never deleted. Only when none can be read does the job fail, naming the directory and why each step
failed. Checkpoints of the previous format (one Orbax checkpoint written whole by the first host)
restore on one host; with several hosts the job fails saying so and what to do.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

from jax_llm.training import checkpoint_parts as parts

STEPS_DIR = "steps"
DAMAGED_DIR = "damaged"  # beside steps/: where unreadable checkpoints are kept for a person to look at
LEGACY_FORMAT = "one Orbax checkpoint written whole by the first host (jax-llm before per-host parts)"


class CheckpointError(RuntimeError):
    """Checkpoints exist but none can be restored: the job must not silently start again from step 0."""


def _key_name(entry) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def flatten(state) -> dict[str, Any]:
    """{"0.blocks.0.attn.qkv.kernel.value": array, ...}: one plain string key per leaf."""
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


def _gathered(values: list[int]) -> np.ndarray:
    """[processes, len(values)]: every process's values, on every process (a collective: all must call)."""
    local = np.asarray(values, np.int64)
    if jax.process_count() == 1:
        return local[None]
    return np.asarray(multihost_utils.process_allgather(local)).reshape(jax.process_count(), len(values))


class Checkpointer:
    """Saves this host's part of the training state and restores the newest complete step; one per process."""

    def __init__(self, directory: Path, *, keep: int):
        self.directory = Path(directory) / STEPS_DIR
        self.keep = keep
        self.process_index, self.process_count = jax.process_index(), jax.process_count()
        self._writer = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint")
        self._pending: concurrent.futures.Future | None = None
        self.last_save_bytes: int | None = None  # what this host wrote for the last finished save

    def _stem(self) -> str:
        return parts.part_stem(self.process_index, self.process_count)

    def save(self, step: int, state, meta: dict[str, Any]) -> None:
        """Starts writing this host's part of `step` (every process calls it); returns once its blocks are in
        host memory. One save is in flight at a time: a new one first waits for the last."""
        self.wait()
        step_dir = self.directory / str(step)
        if (step_dir / f"{self._stem()}.json").exists():
            return  # already saved at this step (SIGTERM right after a periodic save)
        blocks = parts.copy_to_host(flatten(state))  # this host's own blocks, nothing more
        # A snapshot, taken now: the metadata is written in the background, while the caller goes on appending
        # to the same loss history (an evaluation after this step must not land in this step's checkpoint).
        meta = {**json.loads(json.dumps(meta)), "step": step} if self.process_index == 0 else None
        self._pending = self._writer.submit(self._write, step, blocks, meta)

    def _write(self, step: int, blocks: list[parts.HostBlock], meta: dict[str, Any] | None) -> None:
        self.last_save_bytes = parts.write_part(
            self.directory / str(step), step, self.process_index, self.process_count, blocks, meta
        )
        self._prune()

    def _prune(self) -> None:
        """Keeps the newest `keep` steps; a host deletes older step directories in its own local directory."""
        steps = sorted(
            (int(p.name) for p in self.directory.iterdir() if p.is_dir() and p.name.isdigit()), reverse=True
        )
        for step in steps[self.keep :]:
            shutil.rmtree(self.directory / str(step), ignore_errors=True)

    def restore_latest(self, abstract_state) -> Restored | None:
        """The newest step every host can read, placed as `abstract_state` (ShapeDtypeStructs + shardings).

        None when there is no checkpoint; CheckpointError when there are some and none can be read.
        Every process calls it (the hosts agree on the step through collectives).
        """
        target = flatten(abstract_state)
        readable, failures = self._scan()
        newest_is_legacy = bool(readable) and readable[max(readable)] == "legacy"
        if self.process_count > 1 and int(_gathered([int(newest_is_legacy)]).max()):
            raise CheckpointError(self._legacy_advice(readable))
        bound: int | None = None
        while True:
            mine = max((s for s in readable if bound is None or s < bound), default=-1)
            step = int(_gathered([mine]).min())  # the newest step that no host lacks
            if step < 0:
                break
            restored, reason = None, "not complete on another host"
            if step in readable:
                try:
                    restored = self._read(step, readable[step], target)
                except Exception as error:  # noqa: BLE001 - any read failure means this step is unusable
                    first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
                    reason = f"{type(error).__name__}: {first_line}"
            if int(_gathered([int(restored is not None)]).min()):
                for newer in sorted((s for s in readable if s > step), reverse=True):
                    self._set_aside(newer, "not complete on every host")
                state, meta = restored
                return Restored(unflatten(abstract_state, state), step, meta)
            if step in readable:
                del readable[step]
                failures.append(self._set_aside(step, reason[:300]))
            bound = step
        for step in list(readable):
            failures.append(self._set_aside(step, "not complete on every host"))
        if int(_gathered([int(bool(failures))]).max()):  # all hosts fail together, none starts afresh alone
            raise CheckpointError(
                f"no readable checkpoint in {self.directory} (each was set aside under "
                f"{self.directory.parent / DAMAGED_DIR}): "
                + ("; ".join(failures) or "none here; another host's could not be read")
            )
        return None

    def _scan(self) -> tuple[dict[int, Any], list[str]]:
        """{step: StoredStep or "legacy"} of this host's complete steps; the others set aside (reasons)."""
        readable, failures = {}, []
        if not self.directory.is_dir():
            return readable, failures
        on_disk = sorted(
            (int(p.name) for p in self.directory.iterdir() if p.is_dir() and p.name.isdigit()), reverse=True
        )
        for step in on_disk:
            step_dir = self.directory / str(step)
            if parts.is_parts_step(step_dir):
                try:
                    readable[step] = parts.StoredStep(step_dir)
                except (parts.IncompleteStep, OSError, KeyError, TypeError) as error:
                    failures.append(self._set_aside(step, f"incomplete: {error}"[:300]))
            elif (step_dir / "_CHECKPOINT_METADATA").exists() or (step_dir / "state").is_dir():
                readable[step] = "legacy"
            else:
                failures.append(self._set_aside(step, "not a complete checkpoint (no part committed)"))
        return readable, failures

    def _read(self, step: int, stored, target: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(placed arrays, metadata) of one step; raises when it cannot be read."""
        if stored == "legacy":
            return self._read_legacy(step, target)
        if set(stored.arrays) != set(target):
            extra, lacking = set(stored.arrays) - set(target), set(target) - set(stored.arrays)
            raise parts.IncompleteStep(
                f"arrays differ from this run's: extra {sorted(extra)[:3]}, missing {sorted(lacking)[:3]}"
            )
        placed = {name: stored.place(name, like) for name, like in target.items()}
        return placed, dict(stored.meta)

    def _read_legacy(self, step: int, target: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """The previous format, on one host: Orbax's StandardCheckpointer reads `state`, `meta` is JSON."""
        import orbax.checkpoint as ocp

        step_dir = self.directory / str(step)
        meta = json.loads((step_dir / "meta" / "metadata").read_text())
        with ocp.StandardCheckpointer() as reader:
            state = reader.restore((step_dir / "state").absolute(), target)
        return state, meta

    def _legacy_advice(self, readable: dict[int, Any]) -> str:
        newest = max((s for s, v in readable.items() if v == "legacy"), default="?")
        return (
            f"checkpoint {newest} in {self.directory} is in the previous format ({LEGACY_FORMAT}), which "
            f"this job of {self.process_count} hosts cannot read: resume it once on one instance "
            f"(instance_count 1), which restores it and writes its next checkpoints in the per-host "
            f"format, or move it out of the checkpoint S3 prefix to start afresh"
        )

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
        """Blocks until this host's pending part is on disk (and raises what its writing raised)."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def close(self) -> None:
        """Finishes the pending save and releases the writer thread."""
        try:
            self.wait()
        finally:
            self._writer.shutdown(wait=True)
