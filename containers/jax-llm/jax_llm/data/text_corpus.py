"""Raw UTF-8 text on disk: finding the files, reading documents, and encoding them into token shards.

Accepted files (optionally gzip-compressed, `.txt.gz`, `.jsonl.gz`):
  `.txt`    one document per file; a literal `<|endoftext|>` inside also ends a document
  `.jsonl`  one JSON object per line, the document in its `"text"` field

Documents are read in file-path order, in pieces of about a megabyte cut at line ends (so a large
file never sits in memory whole), and joined in the token stream by the EOS token.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from jax_llm.data.shards import ShardWriter
from jax_llm.data.tokenizer import eos_id

TEXT_SUFFIXES = (".txt", ".jsonl", ".txt.gz", ".jsonl.gz")
PIECE_CHARS = 1 << 20  # characters per piece of a long .txt document
ENCODE_BATCH = 64  # pieces per `encode_batch_fast` call (parallel inside tokenizers)


class CorpusError(ValueError):
    """A text file that cannot be read as documents; the message names the file (and line)."""


def list_files(directory: Path) -> list[Path]:
    """Every regular file under `directory`, hidden ones skipped, sorted by relative path (one walk)."""
    directory = Path(directory)
    found = []
    for root, dirs, files in os.walk(directory, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found.extend(Path(root) / f for f in files if not f.startswith("."))
    return sorted(found, key=lambda p: p.relative_to(directory).as_posix())


def is_text_file(path: Path) -> bool:
    """Whether `path` has one of the raw-text suffixes."""
    return path.name.endswith(TEXT_SUFFIXES)


def _open_text(path: Path):
    opener = gzip.open if path.name.endswith(".gz") else open
    return opener(path, "rt", encoding="utf-8", errors="strict", newline="")


def _txt_pieces(path: Path) -> Iterator[tuple[str, bool]]:
    with _open_text(path) as f:
        buffer, size, started = [], 0, False
        for line in f:
            buffer.append(line)
            size += len(line)
            if size >= PIECE_CHARS:
                yield "".join(buffer), False
                buffer, size, started = [], 0, True
        if started or size:  # an empty file is no document
            yield "".join(buffer), True


def _jsonl_pieces(path: Path) -> Iterator[tuple[str, bool]]:
    with _open_text(path) as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                text = json.loads(line)["text"]
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                raise CorpusError(
                    f'{path}:{number}: not a JSON object with a "text" field ({error})'
                ) from error
            if not isinstance(text, str):
                raise CorpusError(f'{path}:{number}: "text" is {type(text).__name__}, not a string')
            if text:
                yield text, True


def iter_pieces(files: Iterable[Path]) -> Iterator[tuple[str, bool]]:
    """(text, ends_document) pieces of every document in `files`, in order."""
    for path in files:
        reader = _jsonl_pieces if path.name.endswith((".jsonl", ".jsonl.gz")) else _txt_pieces
        try:
            yield from reader(path)
        except UnicodeDecodeError as error:
            raise CorpusError(f"{path}: not UTF-8 text ({error})") from error
        except (OSError, EOFError) as error:
            raise CorpusError(f"{path}: unreadable ({error})") from error


def iter_texts(files: Iterable[Path]) -> Iterator[str]:
    """The text of every piece, for tokenizer training."""
    return (text for text, _ in iter_pieces(files))


def _batched(pieces: Iterator[tuple[str, bool]], size: int) -> Iterator[list[tuple[str, bool]]]:
    batch = []
    for piece in pieces:
        batch.append(piece)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def encode_pieces(
    tokenizer: Tokenizer, pieces: Iterable[tuple[str, bool]], writer_for: Callable[[int], ShardWriter]
) -> int:
    """Encodes pieces, an EOS after each document's last piece, into `writer_for(document_index)`.

    Returns the number of documents. Every piece of a document goes to the same writer.
    """
    eos = eos_id(tokenizer)
    documents = 0
    for batch in _batched(iter(pieces), ENCODE_BATCH):
        encodings = tokenizer.encode_batch_fast([text for text, _ in batch], add_special_tokens=False)
        parts: dict[int, list[np.ndarray]] = {}  # id(writer) -> token arrays, kept in stream order
        writers: dict[int, ShardWriter] = {}
        for (_, ends_document), encoding in zip(batch, encodings):
            writer = writer_for(documents)
            writers[id(writer)] = writer
            parts.setdefault(id(writer), []).append(np.asarray(encoding.ids, np.int64))
            if ends_document:
                parts[id(writer)].append(np.array([eos], np.int64))
                documents += 1
        for key, arrays in parts.items():
            writers[key].write(np.concatenate(arrays))
    return documents
