"""Token shards: written in pieces, read back as memory maps, damage detected and named."""

from __future__ import annotations

import numpy as np
import pytest

from jax_llm.data.shards import HEADER_SIZE, ShardError, ShardWriter, open_shard, read_header, token_dtype

META = dict(eos_id=0, fingerprint="0123456789abcdef")


def test_stream_split_into_shards_of_the_requested_size_reads_back_in_order(tmp_path):
    stream = np.arange(2500) % 1000
    with ShardWriter(tmp_path, "train", vocab_size=1000, shard_size=1000, **META) as writer:
        for piece in np.split(stream, [7, 1200, 1201, 2400]):  # writes that straddle shard ends
            writer.write(piece)
    assert [p.name for p in writer.paths] == ["train-00000.bin", "train-00001.bin", "train-00002.bin"]
    headers = [read_header(p) for p in writer.paths]
    assert [h["tokens"] for h in headers] == [1000, 1000, 500]
    assert headers[0] == {
        "dtype": "uint16",
        "tokens": 1000,
        "vocab_size": 1000,
        "eos_id": 0,
        "tokenizer_fingerprint": "0123456789abcdef",
    }
    maps = [open_shard(p) for p in writer.paths]
    assert isinstance(maps[0], np.memmap)
    np.testing.assert_array_equal(np.concatenate(maps), stream)
    assert writer.paths[0].stat().st_size == HEADER_SIZE + 1000 * 2


def test_vocabularies_beyond_uint16_use_four_bytes_per_token(tmp_path):
    assert token_dtype(65536) == np.uint16 and token_dtype(65537) == np.uint32
    with ShardWriter(tmp_path, "big", vocab_size=100_000, shard_size=10, **META) as writer:
        writer.write([99_999, 65_536, 1])
    np.testing.assert_array_equal(open_shard(writer.paths[0]), [99_999, 65_536, 1])


def test_token_ids_outside_the_vocabulary_are_refused(tmp_path):
    with (
        ShardWriter(tmp_path, "x", vocab_size=10, shard_size=10, **META) as writer,
        pytest.raises(ValueError, match="outside"),
    ):
        writer.write([3, 10])


def test_truncated_or_foreign_files_are_errors_naming_the_file(tmp_path):
    with ShardWriter(tmp_path, "train", vocab_size=1000, shard_size=100, **META) as writer:
        writer.write(np.arange(100))
    shard = writer.paths[0]
    with open(shard, "r+b") as f:
        f.truncate(HEADER_SIZE + 150)  # a partial upload
    with pytest.raises(ShardError, match=r"train-00000\.bin.*truncated"):
        read_header(shard)
    foreign = tmp_path / "foreign.bin"
    foreign.write_bytes(b"\x00" * 4096)
    with pytest.raises(ShardError, match=r"foreign\.bin: not a token shard"):
        read_header(foreign)
