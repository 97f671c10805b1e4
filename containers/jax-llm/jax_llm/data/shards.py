"""Token shards: flat token arrays behind a small JSON header, written by `prepare`, memory-mapped by `train`.

One shard file (`*.bin`):

    bytes [0, 8)         magic b"JLLMTOK1"
    bytes [8, 1024)      UTF-8 JSON header, padded with spaces:
                         {"dtype": "uint16"|"uint32", "tokens": n, "vocab_size": V, "eos_id": e,
                          "tokenizer_fingerprint": "<16 hex>"}
    bytes [1024, ...)    n little-endian tokens of that dtype

Every shard describes itself (no separate index file) because `ShardedByS3Key` hands each host a
subset of the objects under a prefix: any subset of shards is still a valid dataset. A shard's
tokens continue the previous shard's stream (documents are separated by EOS, not by files), so
shards sorted by name concatenate back into the full token stream.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

MAGIC = b"JLLMTOK1"
HEADER_SIZE = 1024  # a multiple of every token dtype's size, so the token array is aligned
SHARD_SUFFIX = ".bin"


class ShardError(ValueError):
    """A shard file that is not ours, truncated, or made with another tokenizer; names the file."""


def token_dtype(vocab_size: int) -> np.dtype:
    """The narrowest unsigned dtype holding every token id of a `vocab_size` vocabulary."""
    return np.dtype("<u2") if vocab_size <= 2**16 else np.dtype("<u4")


def _header_bytes(header: dict) -> bytes:
    encoded = json.dumps(header, sort_keys=True).encode()
    if len(MAGIC) + len(encoded) + 1 > HEADER_SIZE:
        raise ValueError(f"shard header too long: {encoded[:100]!r}...")
    return MAGIC + (encoded + b"\n").ljust(HEADER_SIZE - len(MAGIC), b" ")


class ShardWriter:
    """Appends token arrays to `<directory>/<prefix>-00000.bin`, starting a new shard every `shard_size` tokens."""

    def __init__(
        self, directory: Path, prefix: str, *, vocab_size: int, eos_id: int, fingerprint: str, shard_size: int
    ):
        if shard_size < 1:
            raise ValueError(f"shard_size must be positive, got {shard_size}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.prefix = prefix
        self.dtype = token_dtype(vocab_size)
        self.meta = {
            "vocab_size": vocab_size,
            "eos_id": eos_id,
            "tokenizer_fingerprint": fingerprint,
            "dtype": self.dtype.name,
        }
        self.shard_size = shard_size
        self.paths: list[Path] = []
        self.total_tokens = 0
        self._file = None
        self._in_shard = 0

    def _open_next(self) -> None:
        path = self.directory / f"{self.prefix}-{len(self.paths):05d}{SHARD_SUFFIX}"
        self._file = open(path, "wb")  # noqa: SIM115 - kept open across write() calls until close()
        self._file.write(_header_bytes({**self.meta, "tokens": 0}))  # rewritten with the count on close
        self.paths.append(path)
        self._in_shard = 0

    def _close_current(self) -> None:
        if self._file is not None:
            self._file.seek(0)
            self._file.write(_header_bytes({**self.meta, "tokens": self._in_shard}))
            self._file.close()
            self._file = None

    def write(self, tokens: np.ndarray | list[int]) -> None:
        """Appends `tokens` (1-D) to the stream, splitting across shards at `shard_size`."""
        tokens = np.asarray(tokens)
        if tokens.size and (tokens.min() < 0 or tokens.max() >= self.meta["vocab_size"]):
            raise ValueError(f"token ids outside [0, {self.meta['vocab_size']})")
        tokens = tokens.astype(self.dtype)
        while tokens.size:
            if self._file is None or self._in_shard == self.shard_size:
                self._close_current()
                self._open_next()
            take = min(tokens.size, self.shard_size - self._in_shard)
            self._file.write(tokens[:take].tobytes())
            self._in_shard += take
            self.total_tokens += take
            tokens = tokens[take:]

    def close(self) -> list[Path]:
        """Finishes the last shard and returns every shard written, in stream order."""
        self._close_current()
        return self.paths

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_header(path: Path) -> dict:
    """The validated header of a shard; raises ShardError if the file is not a whole shard."""
    path = Path(path)
    with open(path, "rb") as f:
        raw = f.read(HEADER_SIZE)
    if len(raw) < HEADER_SIZE or not raw.startswith(MAGIC):
        raise ShardError(f"{path}: not a token shard (no {MAGIC.decode()} header)")
    try:
        header = json.loads(raw[len(MAGIC) :].decode())
        dtype = np.dtype(header["dtype"]).newbyteorder("<")
        tokens = int(header["tokens"])
        header["vocab_size"], header["eos_id"], header["tokenizer_fingerprint"]
    except (ValueError, KeyError, TypeError) as error:
        raise ShardError(f"{path}: malformed shard header ({error})") from error
    expected = HEADER_SIZE + tokens * dtype.itemsize
    actual = path.stat().st_size
    if actual != expected:
        raise ShardError(
            f"{path}: {actual} bytes, but its header promises {tokens} tokens ({expected} bytes): truncated?"
        )
    return header


def open_shard(path: Path, header: dict | None = None) -> np.memmap | np.ndarray:
    """The shard's tokens as a read-only memory map (nothing is read until indexed)."""
    header = read_header(path) if header is None else header
    dtype = np.dtype(header["dtype"]).newbyteorder("<")
    if header["tokens"] == 0:
        return np.zeros(0, dtype)  # np.memmap refuses empty maps
    return np.memmap(path, dtype=dtype, mode="r", offset=HEADER_SIZE, shape=(header["tokens"],))
