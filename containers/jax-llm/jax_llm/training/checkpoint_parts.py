"""One host's part of a checkpoint step: the array blocks it owns in one file, and a commit file naming them.

    steps/<step>/part-00001-of-00004.bin   the blocks, back to back, raw C-order bytes
    steps/<step>/part-00001-of-00004.json  written last: {"format", "step", "process_index", "process_count",
                                           "data_bytes", "blocks": [{name, dtype, shape, bounds, offset,
                                           nbytes}], "meta" (part 0 only)}

Every distinct block of every array (a block: the slice one device holds) is written exactly once over
the whole job, by one of the devices that hold it; copies of the same block (replication over the mesh)
are dealt to the hosts by a rule every host computes alone (`writers`), so each host writes about
1/hosts of the state and nothing is gathered or sent between hosts. The file names differ per host,
so all hosts' directories can be synced into one S3 prefix without overwriting each other. A step is
complete when the parts of every host are present, each data file has the size its commit file
states, and the blocks cover every array.

Reading builds any block of any array from the blocks that overlap it (`read`), through a memory map of
the part files: a restart on another number of hosts, or another mesh, reads the same files.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np

FORMAT = "jax-llm-checkpoint-parts-1"

Bounds = tuple[tuple[int, int], ...]  # [start, stop) per dimension


def part_stem(process_index: int, process_count: int) -> str:
    """`part-00001-of-00004`: the file names of host 1 of 4."""
    return f"part-{process_index:05d}-of-{process_count:05d}"


def _bounds(index: tuple[slice, ...], shape: tuple[int, ...]) -> Bounds:
    return tuple(tuple(s.indices(n)[:2]) for s, n in zip(index, shape))


def writers(flat: dict[str, jax.Array]) -> dict[tuple[str, Bounds], Any]:
    """The device that writes each distinct block of every array: the same answer on every host.

    A block held by several devices (replicated over a mesh axis, or a whole array without FSDP) is
    written by one of them: blocks are dealt largest first, each to the holder whose host has been dealt
    the fewest bytes so far, so that every host writes about 1/hosts of the state whatever the sharding.
    """
    blocks = []  # (bytes, name, bounds, holders)
    for name, array in flat.items():
        shape = tuple(array.shape)
        holders: dict[Bounds, list] = {}
        for device, index in array.sharding.devices_indices_map(shape).items():
            holders.setdefault(_bounds(index, shape), []).append(device)
        for bounds, devices in holders.items():
            size = math.prod(b - a for a, b in bounds) * array.dtype.itemsize
            blocks.append((size, name, bounds, sorted(devices, key=lambda d: d.id)))
    dealt: dict[int, int] = {}  # process index -> bytes
    chosen = {}
    for size, name, bounds, devices in sorted(blocks, key=lambda b: (-b[0], b[1], b[2])):
        device = min(devices, key=lambda d: (dealt.get(d.process_index, 0), d.id))
        dealt[device.process_index] = dealt.get(device.process_index, 0) + size
        chosen[name, bounds] = device
    return chosen


def owned_blocks(flat: dict[str, jax.Array]) -> list[tuple[str, Bounds, Any]]:
    """(name, bounds, shard) of every block that this process writes."""
    chosen = writers(flat)
    return [
        (name, b, shard)
        for name, array in flat.items()
        for shard in array.addressable_shards
        if chosen[name, (b := _bounds(shard.index, tuple(array.shape)))] == shard.device
    ]


@dataclasses.dataclass
class HostBlock:
    """One block copied to host memory, waiting to be written."""

    name: str
    shape: tuple[int, ...]  # the whole array's
    bounds: Bounds
    data: np.ndarray


def copy_to_host(flat: dict[str, jax.Array]) -> list[HostBlock]:
    """This process's blocks of every array, copied to host memory (a copy: the device buffers are donated
    to the next train step while the blocks are written)."""
    return [
        HostBlock(name, tuple(flat[name].shape), bounds, np.array(shard.data, copy=True))
        for name, bounds, shard in owned_blocks(flat)
    ]


def write_part(
    step_dir: Path,
    step: int,
    process_index: int,
    process_count: int,
    blocks: list[HostBlock],
    meta: dict[str, Any] | None,
) -> int:
    """Writes the data file, syncs it, then the commit file (via a rename); returns the bytes written."""
    step_dir.mkdir(parents=True, exist_ok=True)
    stem = part_stem(process_index, process_count)
    entries, offset = [], 0
    with open(step_dir / f"{stem}.bin", "wb") as data:
        for block in blocks:
            raw = np.ascontiguousarray(block.data)
            data.write(raw.reshape(-1).view(np.uint8))  # bfloat16 has no buffer format of its own
            entries.append(
                {
                    "name": block.name,
                    "dtype": raw.dtype.name,
                    "shape": list(block.shape),
                    "bounds": [list(b) for b in block.bounds],
                    "offset": offset,
                    "nbytes": raw.nbytes,
                }
            )
            offset += raw.nbytes
        data.flush()
        os.fsync(data.fileno())
    commit = {
        "format": FORMAT,
        "step": step,
        "process_index": process_index,
        "process_count": process_count,
        "data_bytes": offset,
        "blocks": entries,
    }
    if meta is not None:
        commit["meta"] = meta
    pending = step_dir / f".{stem}.json.tmp"
    pending.write_text(json.dumps(commit))
    pending.rename(step_dir / f"{stem}.json")  # the part counts from here on
    return offset


def is_parts_step(step_dir: Path) -> bool:
    """Whether a step directory is in this format (it has at least one part file)."""
    return any(step_dir.glob("part-*-of-*.*"))


class IncompleteStep(Exception):
    """A step whose parts are missing, cut short or inconsistent; the message says which."""


@dataclasses.dataclass
class _Block:
    bounds: Bounds
    path: Path
    offset: int
    dtype: str


class StoredStep:
    """A complete step read from its part files (raises IncompleteStep otherwise)."""

    def __init__(self, step_dir: Path):
        self.directory = step_dir
        commits = sorted(step_dir.glob("part-*-of-*.json"))
        if not commits:
            raise IncompleteStep("no committed part (every part-*.json is missing)")
        counts = {int(p.stem.split("-of-")[1]) for p in commits}
        if len(counts) != 1:
            raise IncompleteStep(f"parts of different host counts: {sorted(p.name for p in commits)}")
        self.process_count = counts.pop()
        missing = [
            i
            for i in range(self.process_count)
            if not (step_dir / f"{part_stem(i, self.process_count)}.json").exists()
        ]
        if missing:
            raise IncompleteStep(f"host(s) {missing} of {self.process_count} never committed their part")
        self.meta: dict[str, Any] = {}
        self.arrays: dict[str, tuple[tuple[int, ...], str]] = {}  # name -> (shape, dtype)
        self.blocks: dict[str, list[_Block]] = {}
        for i in range(self.process_count):
            self._add_part(step_dir, i)
        for name, (shape, _) in self.arrays.items():
            covered = sum(math.prod(b - a for a, b in block.bounds) for block in self.blocks[name])
            if covered != math.prod(shape):
                raise IncompleteStep(f"{name}: the parts hold {covered} of its {math.prod(shape)} elements")

    def _add_part(self, step_dir: Path, i: int) -> None:
        stem = part_stem(i, self.process_count)
        try:
            commit = json.loads((step_dir / f"{stem}.json").read_text())
        except ValueError as error:
            raise IncompleteStep(f"{stem}.json is not valid JSON: {error}") from None
        if commit.get("format") != FORMAT:
            raise IncompleteStep(f"{stem}.json: format {commit.get('format')!r}, expected {FORMAT!r}")
        data = step_dir / f"{stem}.bin"
        size = data.stat().st_size if data.exists() else None
        if size != commit["data_bytes"]:
            raise IncompleteStep(
                f"{data.name} holds {'no file' if size is None else f'{size} bytes'}, its "
                f"commit says {commit['data_bytes']} (cut short or missing)"
            )
        self.meta.update(commit.get("meta") or {})
        for entry in commit["blocks"]:
            self.arrays.setdefault(entry["name"], (tuple(entry["shape"]), entry["dtype"]))
            bounds = tuple(tuple(b) for b in entry["bounds"])
            block = _Block(bounds, data, entry["offset"], entry["dtype"])
            self.blocks.setdefault(entry["name"], []).append(block)

    def read(self, name: str, index: tuple[slice, ...]) -> np.ndarray:
        """The block `index` of array `name`, assembled from the stored blocks that overlap it."""
        shape, dtype = self.arrays[name]
        want = _bounds(index, shape) if shape else ()
        out = np.empty([b - a for a, b in want], dtype=jax.numpy.dtype(dtype))
        for block in self.blocks[name]:
            overlap = [(max(a, c), min(b, d)) for (a, b), (c, d) in zip(want, block.bounds)]
            if any(lo >= hi for lo, hi in overlap):
                continue
            extent = tuple(d - c for c, d in block.bounds)
            stored = np.memmap(
                block.path, dtype=out.dtype, mode="r", offset=block.offset, shape=math.prod(extent)
            ).reshape(extent)  # a scalar is one element
            source = tuple(slice(lo - c, hi - c) for (lo, hi), (c, _) in zip(overlap, block.bounds))
            target = tuple(slice(lo - a, hi - a) for (lo, hi), (a, _) in zip(overlap, want))
            out[target] = stored[source]
        return out

    def place(self, name: str, like: jax.ShapeDtypeStruct) -> jax.Array:
        """Array `name` laid out as `like` (shape, dtype, sharding): each device's block read on its host."""
        shape, dtype = self.arrays.get(name, (None, None))
        if shape is None:
            raise IncompleteStep(f"the checkpoint has no array {name}")
        if shape != tuple(like.shape) or jax.numpy.dtype(dtype) != like.dtype:
            raise IncompleteStep(
                f"{name} is {dtype}{list(shape)} in the checkpoint, this run expects "
                f"{like.dtype}{list(like.shape)} (another preset or vocabulary?)"
            )
        return jax.make_array_from_callback(shape, like.sharding, lambda index: self.read(name, index))
