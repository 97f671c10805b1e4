"""Raw text: which files count, how documents are read, and how they become one EOS-separated stream."""

from __future__ import annotations

import gzip
import json
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from jax_llm.data import text_corpus
from jax_llm.data.shards import ShardWriter, open_shard
from jax_llm.data.text_corpus import CorpusError, encode_pieces, iter_pieces, list_files
from jax_llm.data.tokenizer import EOS_TOKEN, eos_id, fingerprint, train_tokenizer

STDLIB = Path(sysconfig.get_paths()["stdlib"])
DOCUMENTS = [p.read_text(encoding="utf-8") for p in sorted((STDLIB / "json").glob("*.py"))]


def test_files_are_listed_once_in_path_order_without_hidden_ones(tmp_path):
    for name in ["b/2.txt", "a.jsonl", "b/10.txt", ".hidden/x.txt", "b/.DS_Store"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    assert [p.relative_to(tmp_path).as_posix() for p in list_files(tmp_path)] == [
        "a.jsonl",
        "b/10.txt",
        "b/2.txt",
    ]


def test_txt_jsonl_and_gzip_documents_come_back_whole_and_in_order(tmp_path, monkeypatch):
    monkeypatch.setattr(text_corpus, "PIECE_CHARS", 1000)  # long files come in pieces at line ends
    (tmp_path / "1.txt").write_text(DOCUMENTS[0])
    (tmp_path / "2.jsonl").write_text(
        "\n".join(json.dumps({"text": d, "id": i}) for i, d in enumerate(DOCUMENTS[1:3])) + "\n\n"
    )  # a blank line is no document
    with gzip.open(tmp_path / "3.txt.gz", "wt", encoding="utf-8") as f:
        f.write(DOCUMENTS[3])
    (tmp_path / "4.txt").write_text("")  # an empty file is no document
    documents, current = [], []
    for text, ends_document in iter_pieces(list_files(tmp_path)):
        assert len(text) < 1000 + 200 or ends_document
        current.append(text)
        if ends_document:
            documents.append("".join(current))
            current = []
    assert documents == DOCUMENTS[:4]


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("bad.txt", b"caf\xe9 latin-1", r"bad\.txt: not UTF-8"),
        (
            "bad.jsonl",
            b'{"text": "ok"}\n{"txt": "typo"}\n',
            r"bad\.jsonl:2: not a JSON object with a \"text\" field",
        ),
        ("bad.jsonl", b'{"text": 3}\n', r"bad\.jsonl:1: \"text\" is int"),
        ("bad.txt.gz", b"not gzip at all", r"bad\.txt\.gz: unreadable"),
    ],
)
def test_unreadable_text_is_an_error_naming_the_file_and_line(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(CorpusError, match=message):
        list(iter_pieces([tmp_path / name]))


def test_encoded_stream_decodes_to_the_documents_joined_by_eos(tmp_path, monkeypatch):
    monkeypatch.setattr(text_corpus, "PIECE_CHARS", 2000)
    monkeypatch.setattr(text_corpus, "ENCODE_BATCH", 3)
    files = []
    for i, document in enumerate(DOCUMENTS):
        files.append(tmp_path / "raw" / f"{i}.txt")
        files[-1].parent.mkdir(exist_ok=True)
        files[-1].write_text(document)
    tokenizer = train_tokenizer(DOCUMENTS, 500)
    writers = [
        ShardWriter(
            tmp_path / name,
            name,
            vocab_size=500,
            eos_id=eos_id(tokenizer),
            fingerprint=fingerprint(tokenizer),
            shard_size=3000,
        )
        for name in ("even", "odd")
    ]
    with writers[0], writers[1]:
        count = encode_pieces(tokenizer, iter_pieces(files), lambda i: writers[i % 2])
    assert count == len(DOCUMENTS)
    for parity, writer in enumerate(writers):
        tokens = np.concatenate([open_shard(p) for p in writer.paths]).tolist()
        assert tokens.count(eos_id(tokenizer)) == len(DOCUMENTS[parity::2])
        text = tokenizer.decode(tokens, skip_special_tokens=False)
        assert text == "".join(d + EOS_TOKEN for d in DOCUMENTS[parity::2])
