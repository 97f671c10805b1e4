"""TokenDataset: batches are a pure function of (seed, step), split by process, read row by row."""

from __future__ import annotations

import numpy as np
import pytest

from jax_llm.data.token_dataset import TokenDataset, TokenStream

SEQ = 8


class RecordingArray:
    """A 1-D token array that records which token ranges were read from it."""

    def __init__(self, values: np.ndarray):
        self.values = values
        self.reads: list[tuple[int, int]] = []

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, index: slice) -> np.ndarray:
        self.reads.append((index.start, index.stop))
        return self.values[index]


def dataset(n_tokens: int = 8 * 40 + 1, seed: int = 0, pieces: int = 3, **kwargs) -> TokenDataset:
    """Token i has value i, so a row tells which window it is; the stream is cut into `pieces` arrays."""
    return TokenDataset(TokenStream(np.array_split(np.arange(n_tokens), pieces)), seed=seed, **kwargs)


def window_ids(rows: np.ndarray) -> list[int]:
    """Which window each row is; asserts every row is a whole window of consecutive tokens."""
    for row in rows:
        assert row[0] % SEQ == 0 and np.array_equal(row, np.arange(row[0], row[0] + SEQ + 1))
    return [int(r[0]) // SEQ for r in rows]


def test_stream_reads_across_array_boundaries():
    arrays = [np.arange(0, 5), np.arange(5, 6), np.arange(6, 20)]
    stream = TokenStream(arrays)
    assert len(stream) == 20
    np.testing.assert_array_equal(stream.read(3, 10), np.arange(3, 13))
    assert stream.read(0, 20).dtype == np.int32
    with pytest.raises(IndexError):
        stream.read(15, 6)


def test_batch_rows_are_whole_windows_and_one_epoch_visits_each_window_once():
    data = dataset()  # 40 windows of 9 tokens, stride 8
    assert data.num_windows(SEQ) == 40
    batches = [data.batch(step, 8, SEQ) for step in range(5)]
    assert batches[0].shape == (8, SEQ + 1) and batches[0].dtype == np.int32
    seen = [w for b in batches for w in window_ids(b)]
    assert sorted(seen) == list(range(40))  # a permutation: nothing repeated, nothing skipped
    assert seen != list(range(40))  # and shuffled
    next_epoch = [w for step in range(5, 10) for w in window_ids(data.batch(step, 8, SEQ))]
    assert sorted(next_epoch) == list(range(40)) and next_epoch != seen


def test_batch_depends_only_on_seed_and_step():
    later = dataset().batch(123, 8, SEQ)  # a fresh dataset, no earlier step drawn: what a resumed run does
    data = dataset()
    for step in range(123):
        data.batch(step, 8, SEQ)
    np.testing.assert_array_equal(data.batch(123, 8, SEQ), later)
    assert not np.array_equal(dataset(seed=1).batch(123, 8, SEQ), later)


@pytest.mark.parametrize("processes", [2, 4])
def test_processes_assemble_exactly_the_single_process_batch(processes):
    single = dataset().batch(17, 8, SEQ)
    parts = [dataset().batch(17, 8, SEQ, process_index=p, process_count=processes) for p in range(processes)]
    assert all(part.shape == (8 // processes, SEQ + 1) for part in parts)
    np.testing.assert_array_equal(np.concatenate(parts), single)


def test_a_process_reads_only_the_tokens_of_its_own_rows():
    arrays = [RecordingArray(a) for a in np.array_split(np.arange(8 * 40 + 1), 3)]
    data = TokenDataset(TokenStream(arrays), seed=0)
    rows = data.batch(3, 8, SEQ, process_index=1, process_count=2)
    starts = np.cumsum([0] + [len(a) for a in arrays])
    read = sorted((starts[i] + a, starts[i] + b) for i, array in enumerate(arrays) for a, b in array.reads)
    tokens_read = sorted({t for a, b in read for t in range(a, b)})
    assert tokens_read == sorted({int(t) for row in rows for t in row})
    assert len(tokens_read) <= 4 * (SEQ + 1)


def test_host_sharded_data_draws_the_local_rows_from_local_data_alone():
    # ShardedByS3Key: host 1 holds different files, so its rows come from its own data, seeded the same.
    local = dataset(n_tokens=8 * 20 + 1, host_sharded=True)
    alone = dataset(n_tokens=8 * 20 + 1).batch(5, 4, SEQ)
    np.testing.assert_array_equal(local.batch(5, 8, SEQ, process_index=1, process_count=2), alone)


def test_a_batch_larger_than_the_dataset_wraps_into_the_next_epoch():
    rows = dataset(n_tokens=8 * 3 + 1).batch(0, 7, SEQ)  # 3 windows, 7 rows
    ids = window_ids(rows)
    assert sorted(ids[:3]) == [0, 1, 2] and sorted(ids[3:6]) == [0, 1, 2]


def test_eval_batches_are_a_fixed_count_of_consecutive_windows_split_by_process():
    data = dataset()
    batches = list(data.eval_batches(8, SEQ, max_batches=3))
    assert len(batches) == 3
    assert [w for b in batches for w in window_ids(b)] == list(range(24))
    halves = [list(data.eval_batches(8, SEQ, 3, process_index=p, process_count=2)) for p in range(2)]
    for b in range(3):
        np.testing.assert_array_equal(np.concatenate([halves[0][b], halves[1][b]]), batches[b])
    # A small validation set still gives every host the same number of batches (collectives line up).
    small = list(dataset(n_tokens=8 * 5 + 1).eval_batches(8, SEQ, max_batches=2))
    assert len(small) == 2 and window_ids(small[0]) == [0, 1, 2, 3, 4, 0, 1, 2]


def test_held_out_tail_shares_no_token_with_the_head():
    head, tail = dataset().split_tail(4, SEQ)
    assert tail.num_windows(SEQ) == 4 and head.num_windows(SEQ) >= 35
    head_tokens = {int(t) for step in range(10) for row in head.batch(step, 8, SEQ) for t in row}
    tail_tokens = {int(t) for b in tail.eval_batches(4, SEQ, 1) for row in b for t in row}
    assert head_tokens and tail_tokens and max(head_tokens) < min(tail_tokens)
    with pytest.raises(ValueError, match="cannot hold out"):
        dataset().split_tail(40, SEQ)


def test_uneven_process_split_and_too_little_data_are_errors():
    with pytest.raises(ValueError, match="not split evenly"):
        dataset().batch(0, 6, SEQ, process_index=0, process_count=4)
    with pytest.raises(ValueError, match="fewer than one window"):
        dataset(n_tokens=SEQ).batch(0, 2, SEQ)
