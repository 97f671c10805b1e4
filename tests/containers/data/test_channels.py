"""The training job's channels: raw text or shards in, TokenDatasets out; bad channels named with their path."""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from jax_llm.contract.paths import SageMakerPaths
from jax_llm.data.channels import DataError, load_training_data
from jax_llm.data.shards import HEADER_SIZE, ShardWriter
from jax_llm.data.tokenizer import (
    EOS_TOKEN,
    eos_id,
    fingerprint,
    load_tokenizer,
    save_tokenizer,
    train_tokenizer,
)

STDLIB = Path(sysconfig.get_paths()["stdlib"])
DOCUMENTS = [p.read_text(encoding="utf-8") for p in sorted((STDLIB / "json").glob("*.py"))]
SEQ = 32


def tree(root: Path, channels: dict[str, dict] | None = None, hosts: int = 1) -> SageMakerPaths:
    """An /opt/ml tree with inputdataconfig.json for `channels` (name -> extra spec) and resourceconfig.json."""
    channels = {"train": {}} if channels is None else channels
    paths = SageMakerPaths(root)
    paths.input_config.mkdir(parents=True, exist_ok=True)
    paths.input_data_config.write_text(
        json.dumps(
            {
                name: {"TrainingInputMode": "FastFile", "S3DistributionType": "FullyReplicated", **spec}
                for name, spec in channels.items()
            }
        )
    )
    paths.resource_config.write_text(
        json.dumps({"current_host": "algo-1", "hosts": [f"algo-{i + 1}" for i in range(hosts)]})
    )
    for name in channels:
        paths.channel(name).mkdir(parents=True, exist_ok=True)
    return paths


def load(paths: SageMakerPaths, **kwargs):
    return load_training_data(
        paths, **{"vocab_size": 400, "seq_len": SEQ, "seed": 0, "work_dir": paths.root / "work", **kwargs}
    )


def write_shards(directory: Path, tokenizer, documents: list[str]) -> list[Path]:
    with ShardWriter(
        directory,
        directory.name,
        vocab_size=tokenizer.get_vocab_size(),
        eos_id=eos_id(tokenizer),
        fingerprint=fingerprint(tokenizer),
        shard_size=5000,
    ) as writer:
        for document in documents:
            writer.write(tokenizer.encode(document).ids + [eos_id(tokenizer)])
    return writer.paths


def decode(tokenizer_file: Path, rows: np.ndarray) -> list[str]:
    tokenizer = load_tokenizer(tokenizer_file)
    return [tokenizer.decode(row.tolist(), skip_special_tokens=False) for row in rows]


def test_raw_text_trains_a_tokenizer_and_holds_out_a_disjoint_tail(tmp_path):
    paths = tree(tmp_path)
    for i, document in enumerate(DOCUMENTS[:-1]):
        (paths.channel("train") / f"{i}.txt").write_text(document)
    (paths.channel("train") / "last.jsonl").write_text(json.dumps({"text": DOCUMENTS[-1]}) + "\n")
    data = load(paths)
    assert data.tokenizer_file == paths.root / "work" / "tokenizer.json"
    assert data.vocab_size == 400 == load_tokenizer(data.tokenizer_file).get_vocab_size()
    corpus = EOS_TOKEN.join(DOCUMENTS) + EOS_TOKEN
    for text in decode(data.tokenizer_file, data.train.batch(0, 4, SEQ)):
        assert text in corpus
    assert data.validation.num_tokens < 0.1 * data.train.num_tokens
    # Train then validation is the whole stream, cut once: the validation tail is never trained on.
    head, tail = (ds.stream.read(ds.start, ds.num_tokens) for ds in (data.train, data.validation))
    assert decode(data.tokenizer_file, np.stack([np.concatenate([head, tail])]))[0] == corpus
    assert data.train.stop == data.validation.start and data.train.start == 0
    assert data.validation.stop == len(data.train.stream)


def test_same_files_give_the_same_tokenizer_and_batches_on_every_host(tmp_path):
    hosts = []
    for host in ("a", "b"):
        paths = tree(tmp_path / host)
        for i, document in enumerate(DOCUMENTS):
            (paths.channel("train") / f"{i}.txt").write_text(document)
        hosts.append(load(paths))
    assert hosts[0].tokenizer_file.read_bytes() == hosts[1].tokenizer_file.read_bytes()
    np.testing.assert_array_equal(hosts[0].train.batch(9, 4, SEQ), hosts[1].train.batch(9, 4, SEQ))


def test_prepared_shards_with_their_tokenizer_and_validation_channels(tmp_path):
    paths = tree(tmp_path, {"train": {}, "validation": {}, "tokenizer": {}})
    tokenizer = train_tokenizer(DOCUMENTS, 600)
    save_tokenizer(tokenizer, paths.channel("tokenizer") / "tokenizer.json")
    write_shards(paths.channel("train"), tokenizer, DOCUMENTS[:-1])
    write_shards(paths.channel("validation"), tokenizer, DOCUMENTS[-1:])
    data = load(paths, vocab_size=123)  # ignored: the given tokenizer decides
    assert data.vocab_size == 600 and data.tokenizer_file == paths.channel("tokenizer") / "tokenizer.json"
    assert data.validation.num_tokens == len(tokenizer.encode(DOCUMENTS[-1]).ids) + 1
    [rows] = data.validation.eval_batches(1, SEQ, max_batches=1)
    assert decode(data.tokenizer_file, rows)[0] == tokenizer.decode(
        tokenizer.encode(DOCUMENTS[-1]).ids[: SEQ + 1]
    )
    assert not data.train.host_sharded


def test_sharded_by_s3_key_marks_the_datasets_host_sharded(tmp_path):
    paths = tree(tmp_path, {"train": {"S3DistributionType": "ShardedByS3Key"}, "tokenizer": {}}, hosts=2)
    tokenizer = train_tokenizer(DOCUMENTS, 500)
    save_tokenizer(tokenizer, paths.channel("tokenizer") / "tokenizer.json")
    (paths.channel("train") / "mine.txt").write_text(DOCUMENTS[0])  # raw text is fine: the tokenizer is given
    data = load(paths)
    assert data.train.host_sharded and data.validation.host_sharded


def _no_train(paths):
    paths.channel("train").rmdir()


def _text(name, content=b"x" * 100):
    def write(paths):
        (paths.channel("train") / name).write_bytes(content)

    return write


def _shards_without_tokenizer(paths):
    write_shards(paths.channel("train"), train_tokenizer(DOCUMENTS, 300), DOCUMENTS)


def _truncated_shard(paths):
    tokenizer = train_tokenizer(DOCUMENTS, 300)
    save_tokenizer(tokenizer, paths.channel("tokenizer") / "tokenizer.json")
    shard = write_shards(paths.channel("train"), tokenizer, DOCUMENTS)[1]
    with open(shard, "r+b") as f:
        f.truncate(HEADER_SIZE + 11)


def _other_tokenizer(paths):
    write_shards(paths.channel("train"), train_tokenizer(DOCUMENTS, 300), DOCUMENTS)
    save_tokenizer(train_tokenizer(DOCUMENTS, 301), paths.channel("tokenizer") / "tokenizer.json")


def _mixed(paths):
    _text("a.txt", DOCUMENTS[0].encode())(paths)
    write_shards(paths.channel("train"), train_tokenizer(DOCUMENTS, 300), DOCUMENTS)


def _sharded_text_without_tokenizer(paths):
    _text("a.txt", DOCUMENTS[0].encode())(paths)
    paths.input_data_config.write_text(json.dumps({"train": {"S3DistributionType": "ShardedByS3Key"}}))
    paths.resource_config.write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1", "algo-2"]}))


def _pipe(paths):
    _text("a.txt")(paths)
    paths.input_data_config.write_text(json.dumps({"train": {"TrainingInputMode": "Pipe"}}))


@pytest.mark.parametrize(
    "breaks, channel, message",
    [
        (_no_train, "train", "missing"),
        (lambda paths: None, "train", "empty"),
        (_text("notes.csv"), "train", r"no usable file .*found notes\.csv"),
        (_text("latin1.txt", b"caf\xe9"), "train", r"latin1\.txt: not UTF-8"),
        (_text("bad.jsonl", b'{"txt": 1}\n'), "train", r"bad\.jsonl:1"),
        (_text("tiny.txt", b"hi"), "train", r"too few to hold out"),
        (_shards_without_tokenizer, "train", "give the 'tokenizer' channel"),
        (_truncated_shard, "train", r"train-00001\.bin.*truncated"),
        (
            _other_tokenizer,
            "train",
            r"train-00000\.bin: made with tokenizer \w+, but the tokenizer in use is",
        ),
        (_mixed, "train", "both token shards"),
        (_sharded_text_without_tokenizer, "train", "would train a different tokenizer"),
        (_pipe, "train", "Pipe input mode is not supported"),
        (lambda paths: _text("a.txt", DOCUMENTS[0].encode())(paths), "tokenizer", "empty"),
        (
            lambda paths: (
                _text("a.txt", DOCUMENTS[0].encode())(paths),
                (paths.channel("tokenizer") / "vocab.txt").write_text("x"),
            ),
            "tokenizer",
            "no tokenizer.json",
        ),
        (
            lambda paths: (_text("a.txt", DOCUMENTS[0].encode())(paths), paths.channel("validation").rmdir()),
            "validation",
            "missing",
        ),
        (
            lambda paths: (
                _text("a.txt", DOCUMENTS[0].encode())(paths),
                (paths.channel("validation") / "v.txt").write_text("short"),
            ),
            "validation",
            "fewer than one",
        ),
    ],
)
def test_bad_channels_are_errors_naming_the_channel_and_its_path(tmp_path, breaks, channel, message):
    paths = tree(tmp_path, {"train": {}, channel: {}} if channel != "train" else None)
    breaks(paths)
    with pytest.raises(DataError, match=message) as error:
        load(paths)
    assert f"channel '{channel}' ({paths.channel(channel)})" in str(error.value)
