"""Batches of token windows drawn from memory-mapped shards, as a pure function of (seed, step).

The token stream (shards concatenated in name order) is cut into windows of `seq_len + 1` tokens
with stride `seq_len`: window i holds tokens [i*seq_len, i*seq_len + seq_len + 1), so every token
after the first is a target exactly once per epoch. Global row r of step s is position
p = s*global_batch + r; epoch p // n_windows uses its own permutation of the windows (seeded by
(seed, epoch)). A process reads only its own rows from disk, so hosts that each build their slice
assemble exactly the batch one process would, and a resumed run needs nothing but the step.

With `host_sharded` (the channel was `ShardedByS3Key`, so each host holds different files) the
host's local data plays the part of the whole stream and the host's rows are drawn from it alone.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence

import numpy as np


class TokenStream:
    """Several 1-D token arrays (usually memory maps) read as one contiguous stream."""

    def __init__(self, arrays: Sequence[np.ndarray]):
        self.arrays = [a for a in arrays if len(a)]
        self.starts = np.cumsum(
            [0] + [len(a) for a in self.arrays]
        ).tolist()  # starts[i]: first token of array i

    def __len__(self) -> int:
        return self.starts[-1]

    def read(self, start: int, length: int) -> np.ndarray:
        """Tokens [start, start + length) as int32, copied from however many arrays they span."""
        if start < 0 or start + length > len(self):
            raise IndexError(f"tokens [{start}, {start + length}) outside a stream of {len(self)}")
        out = np.empty(length, np.int32)
        i = bisect.bisect_right(self.starts, start) - 1
        done = 0
        while done < length:
            offset = start + done - self.starts[i]
            take = min(length - done, len(self.arrays[i]) - offset)
            out[done : done + take] = self.arrays[i][offset : offset + take]
            done += take
            i += 1
        return out


class TokenDataset:
    """Tokens [start, stop) of a stream, served as seeded per-epoch permutations of windows."""

    def __init__(
        self,
        stream: TokenStream,
        *,
        seed: int,
        start: int = 0,
        stop: int | None = None,
        host_sharded: bool = False,
        name: str = "dataset",
    ):
        self.stream = stream
        self.seed = seed
        self.start = start
        self.stop = len(stream) if stop is None else stop
        self.host_sharded = host_sharded
        self.name = name
        self._permutations: dict[tuple[int, int], np.ndarray] = {}

    @property
    def num_tokens(self) -> int:
        """Tokens in this dataset (on this host, when host-sharded)."""
        return self.stop - self.start

    def num_windows(self, seq_len: int) -> int:
        """Windows of `seq_len + 1` tokens (stride `seq_len`) that fit in the dataset."""
        return max(0, (self.num_tokens - 1) // seq_len)

    def _check(self, global_batch: int, seq_len: int, process_index: int, process_count: int) -> int:
        if seq_len < 1 or global_batch < 1:
            raise ValueError(f"seq_len and global_batch must be positive, got {seq_len} and {global_batch}")
        if global_batch % process_count or not 0 <= process_index < process_count:
            raise ValueError(
                f"global_batch {global_batch} is not split evenly over {process_count} processes "
                f"(or process_index {process_index} is out of range)"
            )
        if self.num_windows(seq_len) == 0:
            raise ValueError(
                f"{self.name}: {self.num_tokens} tokens is fewer than one window of {seq_len + 1}"
            )
        return global_batch // process_count

    def _permutation(self, epoch: int, n_windows: int) -> np.ndarray:
        key = (epoch, n_windows)
        if key not in self._permutations:
            if len(self._permutations) >= 2:  # a step spans at most two epochs unless the data is tiny
                self._permutations.pop(next(iter(self._permutations)))
            self._permutations[key] = np.random.default_rng([self.seed, epoch]).permutation(n_windows)
        return self._permutations[key]

    def _windows(self, window_ids: np.ndarray, seq_len: int) -> np.ndarray:
        # Reads in file order (sorted), then puts rows back in batch order: sequential reads suit FastFile.
        order = np.argsort(window_ids, kind="stable")
        rows = np.empty((len(window_ids), seq_len + 1), np.int32)
        for i in order:
            rows[i] = self.stream.read(self.start + int(window_ids[i]) * seq_len, seq_len + 1)
        return rows

    def batch(
        self, step: int, global_batch: int, seq_len: int, process_index: int = 0, process_count: int = 1
    ) -> np.ndarray:
        """This process's rows of the global batch for `step`: int32 [global_batch // process_count, seq_len + 1]."""
        local = self._check(global_batch, seq_len, process_index, process_count)
        n_windows = self.num_windows(seq_len)
        if self.host_sharded:  # this host's data is the whole stream for this host's rows
            positions = step * local + np.arange(local, dtype=np.int64)
        else:
            positions = step * global_batch + process_index * local + np.arange(local, dtype=np.int64)
        epochs, offsets = np.divmod(positions, n_windows)
        window_ids = np.array(
            [self._permutation(int(e), n_windows)[o] for e, o in zip(epochs, offsets)], np.int64
        )
        return self._windows(window_ids, seq_len)

    def eval_batches(
        self,
        global_batch: int,
        seq_len: int,
        max_batches: int,
        process_index: int = 0,
        process_count: int = 1,
    ) -> Iterator[np.ndarray]:
        """Exactly `max_batches` batches of consecutive windows in stream order, each int32 [local, seq_len + 1].

        The same count on every host whatever its data (so collectives line up); a dataset smaller
        than `max_batches * global_batch` windows wraps around and repeats windows.
        """
        local = self._check(global_batch, seq_len, process_index, process_count)
        n_windows = self.num_windows(seq_len)
        first_row = 0 if self.host_sharded else process_index * local
        rows_per_batch = local if self.host_sharded else global_batch
        for b in range(max_batches):
            positions = b * rows_per_batch + first_row + np.arange(local, dtype=np.int64)
            yield self._windows(positions % n_windows, seq_len)

    def split_tail(self, tail_windows: int, seq_len: int) -> tuple[TokenDataset, TokenDataset]:
        """(head, tail): the last `tail_windows` windows held out; the two share no token."""
        # The tail is the last tail_windows*seq_len + 1 tokens; the head is everything before it.
        boundary = self.stop - (tail_windows * seq_len + 1)
        if tail_windows < 1 or (boundary - self.start - 1) // seq_len < 1:
            raise ValueError(
                f"{self.name}: cannot hold out {tail_windows} of {self.num_windows(seq_len)} windows"
            )
        head = TokenDataset(
            self.stream,
            seed=self.seed,
            start=self.start,
            stop=boundary,
            host_sharded=self.host_sharded,
            name=self.name,
        )
        tail = TokenDataset(
            self.stream,
            seed=self.seed,
            start=boundary,
            stop=self.stop,
            host_sharded=self.host_sharded,
            name=f"{self.name} (held out)",
        )
        return head, tail
