"""The training job's data channels: find them, check them, and turn them into TokenDatasets.

Channels (`/opt/ml/input/data/<name>/`):
  train       required; token shards written by `prepare`, or raw UTF-8 text (see text_corpus)
  validation  optional; same formats; without it the tail of train is held out (never trained on)
  tokenizer   optional; holds `tokenizer.json`. Without it a byte-level BPE is trained on the train
              text (deterministic, so every host with the same files trains the same tokenizer).
Raw text is tokenized once at start into shards under `work_dir`; from then on both formats are
read the same way: memory-mapped, each process reading only the windows of its own rows.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from pathlib import Path

from jax_llm.contract.paths import TOKENIZER_CHANNEL, TRAIN_CHANNEL, VALIDATION_CHANNEL, SageMakerPaths
from jax_llm.data.shards import SHARD_SUFFIX, ShardError, ShardWriter, open_shard, read_header
from jax_llm.data.text_corpus import (
    CorpusError,
    encode_pieces,
    is_text_file,
    iter_pieces,
    iter_texts,
    list_files,
)
from jax_llm.data.token_dataset import TokenDataset, TokenStream
from jax_llm.data.tokenizer import (
    TOKENIZER_FILE,
    TokenizerError,
    eos_id,
    fingerprint,
    load_tokenizer,
    save_tokenizer,
    train_tokenizer,
)

__all__ = ["DataError", "TrainingData", "TokenDataset", "load_training_data"]

SHARDED = "ShardedByS3Key"
DEFAULT_VALIDATION_FRACTION = 0.05
WORK_SHARD_TOKENS = 1 << 28  # shards of tokenized raw text under work_dir (local disk; size barely matters)


class DataError(Exception):
    """Unusable input data; the message names the channel and the path."""


@dataclasses.dataclass
class TrainingData:
    """What the trainer needs from the channels."""

    train: TokenDataset
    validation: TokenDataset
    tokenizer_file: Path
    vocab_size: int  # the tokenizer's vocabulary size (the model may round it up)


@dataclasses.dataclass(frozen=True)
class Channel:
    """One input channel as this host sees it, sorted into shard files and raw-text files."""

    name: str
    path: Path
    distribution: str  # "FullyReplicated" or "ShardedByS3Key"
    shards: list[Path]
    texts: list[Path]

    def error(self, reason: str) -> DataError:
        """A DataError naming this channel and its path."""
        return DataError(f"channel '{self.name}' ({self.path}): {reason}")


def _read_json(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: unreadable ({error})") from error


def _open_channel(paths: SageMakerPaths, config: dict, name: str, required: bool) -> Channel | None:
    path = paths.channel(name)
    spec = config.get(name) or {}
    if not path.is_dir():
        if required or name in config:
            raise DataError(f"channel '{name}' ({path}): missing; the job must provide it")
        return None
    if spec.get("TrainingInputMode") == "Pipe":
        raise DataError(f"channel '{name}' ({path}): Pipe input mode is not supported; use File or FastFile")
    try:
        files = list_files(path)
    except OSError as error:
        raise DataError(f"channel '{name}' ({path}): unreadable ({error})") from error
    if not files:
        raise DataError(f"channel '{name}' ({path}): empty")
    shards = [f for f in files if f.name.endswith(SHARD_SUFFIX)]
    texts = [f for f in files if is_text_file(f)]
    channel = Channel(name, path, spec.get("S3DistributionType", "FullyReplicated"), shards, texts)
    if name == TOKENIZER_CHANNEL:
        return channel
    if shards and texts:
        raise channel.error(
            f"holds both token shards ({shards[0].name}) and raw text ({texts[0].name}); use one kind"
        )
    if not shards and not texts:
        names = ", ".join(f.name for f in files[:5])
        raise channel.error(
            f"no usable file (expected *{SHARD_SUFFIX} token shards, or .txt/.jsonl text); found {names}"
        )
    ignored = len(files) - len(shards) - len(texts)
    if ignored:
        print(
            f"data: channel '{name}': ignoring {ignored} file(s) that are neither shards nor text",
            file=sys.stderr,
        )
    return channel


def _host_count(paths: SageMakerPaths) -> int:
    return len(_read_json(paths.resource_config).get("hosts", [])) or 1


def _tokenizer(channel: Channel | None, train: Channel, vocab_size: int, work_dir: Path, hosts: int):
    """(tokenizer, its file): from the tokenizer channel, else trained on the train channel's text."""
    if channel is not None:
        file = channel.path / TOKENIZER_FILE
        if not file.is_file():
            raise channel.error(f"no {TOKENIZER_FILE}")
        try:
            return load_tokenizer(file), file
        except TokenizerError as error:
            raise channel.error(str(error)) from error
    if train.shards:
        raise train.error(
            f"token shards need the tokenizer they were made with: give the 'tokenizer' channel "
            f"(the {TOKENIZER_FILE} that prepare wrote)"
        )
    if train.distribution == SHARDED and hosts > 1:
        raise train.error(
            f"with {SHARDED} each host has different text and would train a different tokenizer: "
            f"give the 'tokenizer' channel, or make train FullyReplicated"
        )
    try:
        tokenizer = train_tokenizer(iter_texts(train.texts), vocab_size)
    except CorpusError as error:
        raise train.error(str(error)) from error
    return tokenizer, save_tokenizer(tokenizer, Path(work_dir) / TOKENIZER_FILE)


def _dataset(channel: Channel, tokenizer, work_dir: Path, seed: int) -> TokenDataset:
    """The channel's tokens as a dataset: its shards, or its text tokenized into shards under work_dir."""
    shard_files = channel.shards
    if channel.texts:
        directory = Path(work_dir) / "tokens" / channel.name
        shutil.rmtree(directory, ignore_errors=True)
        writer = ShardWriter(
            directory,
            channel.name,
            vocab_size=tokenizer.get_vocab_size(),
            eos_id=eos_id(tokenizer),
            fingerprint=fingerprint(tokenizer),
            shard_size=WORK_SHARD_TOKENS,
        )
        try:
            with writer:
                encode_pieces(tokenizer, iter_pieces(channel.texts), lambda _: writer)
        except CorpusError as error:
            raise channel.error(str(error)) from error
        shard_files = writer.paths
    expected = fingerprint(tokenizer)
    arrays = []
    for path in shard_files:
        try:
            header = read_header(path)
            if header["tokenizer_fingerprint"] != expected:
                raise ShardError(
                    f"{path}: made with tokenizer {header['tokenizer_fingerprint']}, but the tokenizer "
                    f"in use is {expected}; give the {TOKENIZER_FILE} that wrote these shards"
                )
            arrays.append(open_shard(path, header))
        except (ShardError, OSError) as error:
            raise channel.error(str(error)) from error
    return TokenDataset(
        TokenStream(arrays),
        seed=seed,
        host_sharded=channel.distribution == SHARDED,
        name=f"channel '{channel.name}'",
    )


def _require_window(dataset: TokenDataset, channel: Channel, seq_len: int, what: str = "") -> None:
    if dataset.num_windows(seq_len) < 1:
        raise channel.error(
            f"{what}{dataset.num_tokens} tokens, fewer than one sequence of seq_len + 1 = {seq_len + 1}"
        )


def load_training_data(
    paths: SageMakerPaths,
    *,
    vocab_size: int,
    seq_len: int,
    seed: int,
    work_dir: Path,
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
) -> TrainingData:
    """Reads the train/validation/tokenizer channels; raises DataError naming the channel and path."""
    config = _read_json(paths.input_data_config)
    train_channel = _open_channel(paths, config, TRAIN_CHANNEL, required=True)
    validation_channel = _open_channel(paths, config, VALIDATION_CHANNEL, required=False)
    tokenizer_channel = _open_channel(paths, config, TOKENIZER_CHANNEL, required=False)
    Path(work_dir).mkdir(parents=True, exist_ok=True)
    tokenizer, tokenizer_file = _tokenizer(
        tokenizer_channel, train_channel, vocab_size, work_dir, _host_count(paths)
    )

    train = _dataset(train_channel, tokenizer, work_dir, seed)
    if validation_channel is not None:
        validation = _dataset(validation_channel, tokenizer, work_dir, seed)
        _require_window(validation, validation_channel, seq_len)
    else:
        # Hold out the tail of train: at least one window, and at least one window left to train on.
        held_out = max(1, round(train.num_windows(seq_len) * validation_fraction))
        if train.num_windows(seq_len) < held_out + 2:  # +2: the split drops up to one boundary window
            raise train_channel.error(
                f"{train.num_tokens} tokens are too few to hold out a validation slice "
                f"of {held_out} sequence(s) of {seq_len + 1}; add data or a 'validation' channel"
            )
        train, validation = train.split_tail(held_out, seq_len)
    _require_window(train, train_channel, seq_len)
    print(
        f"data: train {train.num_tokens} tokens, validation {validation.num_tokens} tokens"
        f"{' (held out of train)' if validation_channel is None else ''}, tokenizer {tokenizer_file} "
        f"(vocab {tokenizer.get_vocab_size()}){', host-sharded' if train.host_sharded else ''}",
        flush=True,
    )
    return TrainingData(
        train=train,
        validation=validation,
        tokenizer_file=Path(tokenizer_file),
        vocab_size=tokenizer.get_vocab_size(),
    )
