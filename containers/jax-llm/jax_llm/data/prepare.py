"""`python -m jax_llm prepare`: the Processing job that turns raw text into a tokenizer and token shards.

Reads `.txt`/`.jsonl` text from the `raw` input and writes, ready for the training job's channels:
  output/tokenizer/tokenizer.json    -> channel `tokenizer`
  output/train/train-00000.bin ...   -> channel `train`
  output/validation/validation-*.bin -> channel `validation`
Local paths come from `config/processingjobconfig.json` (ProcessingInputs / ProcessingOutputConfig,
matched by name), else `processing/input/raw` and `processing/output/<name>`. Every document goes
whole to one split: document i (in file order) is held out for validation when i % k == k - 1,
k = round(1 / validation_fraction), so the held-out set samples the whole corpus evenly.
On several instances each tokenizes its own part of the input (ShardedByS3Key) with the tokenizer
given as input `tokenizer`, and names its shards after its host so the outputs do not collide.
Errors go to `output/message` (its first 1 KB is the job's ExitMessage) and exit non-zero.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from jax_llm.contract.failure import write_failure, write_message
from jax_llm.contract.hyperparameters import MIN_VOCAB_SIZE
from jax_llm.contract.paths import (
    DATA_CHANNELS,
    DEFAULT_ROOT,
    RAW_INPUT,
    TOKENIZER_CHANNEL,
    TRAIN_CHANNEL,
    VALIDATION_CHANNEL,
    SageMakerPaths,
)
from jax_llm.data.shards import ShardWriter
from jax_llm.data.text_corpus import encode_pieces, is_text_file, iter_pieces, iter_texts, list_files
from jax_llm.data.tokenizer import (
    TOKENIZER_FILE,
    eos_id,
    fingerprint,
    load_tokenizer,
    save_tokenizer,
    train_tokenizer,
)

OUTPUTS = DATA_CHANNELS  # one output per channel that `train` reads


class PrepareError(Exception):
    """Bad arguments or unusable input: the message says which and where."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print and sys.exit(2); the job needs the message file
        raise PrepareError(f"prepare: {message}\n{self.format_usage()}")


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return number


def _fraction(value: str) -> float:
    number = float(value)
    if not 0.0 <= number < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return number


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The job's ContainerArguments after `prepare`."""
    parser = _Parser(prog="python -m jax_llm prepare", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--vocab-size",
        type=int,
        default=32768,
        help=f"BPE vocabulary size, EOS included (at least {MIN_VOCAB_SIZE}; ignored with a tokenizer input)",
    )
    parser.add_argument(
        "--validation-fraction",
        type=_fraction,
        default=0.02,
        help="share of documents held out for validation; 0 writes no validation shards",
    )
    parser.add_argument(
        "--shard-size-tokens",
        type=_positive_int,
        default=1 << 26,
        help="tokens per shard file (2 bytes each below 65536 vocab, else 4)",
    )
    parser.add_argument("--input-name", default=RAW_INPUT, help="the ProcessingInput holding the raw text")
    args = parser.parse_args(argv)
    if args.vocab_size < MIN_VOCAB_SIZE:
        parser.error(
            f"argument --vocab-size: must be at least {MIN_VOCAB_SIZE} (256 bytes + EOS), got {args.vocab_size}"
        )
    return args


def _rebase(local_path: str, paths: SageMakerPaths) -> Path:
    """A LocalPath as written in the job config, under this process's root when that is not /opt/ml."""
    path = Path(local_path)
    if paths.root != Path(DEFAULT_ROOT) and path.is_relative_to(DEFAULT_ROOT):
        return paths.root / path.relative_to(DEFAULT_ROOT)
    return path


def _local_paths(paths: SageMakerPaths, input_name: str) -> tuple[Path, Path | None, dict[str, Path]]:
    """(raw text dir, tokenizer input dir or None, output dir per name) from the job config or defaults."""
    config = {}
    if paths.processing_job_config.exists():
        config = json.loads(paths.processing_job_config.read_text())
    inputs = {
        i["InputName"]: _rebase(i["S3Input"]["LocalPath"], paths)
        for i in config.get("ProcessingInputs", [])
        if "S3Input" in i
    }
    outputs = {
        o["OutputName"]: _rebase(o["S3Output"]["LocalPath"], paths)
        for o in config.get("ProcessingOutputConfig", {}).get("Outputs", [])
        if "S3Output" in o
    }
    raw = inputs.get(input_name, paths.processing_input(input_name))
    tokenizer = inputs.get(TOKENIZER_CHANNEL, paths.processing_input(TOKENIZER_CHANNEL))
    return (
        raw,
        tokenizer if tokenizer.is_dir() else None,
        {name: outputs.get(name, paths.processing_output(name)) for name in OUTPUTS},
    )


def _host(paths: SageMakerPaths) -> tuple[str, int]:
    """(this host's name, the number of hosts) from config/resourceconfig.json; one host if absent."""
    if not paths.processing_resource_config.exists():
        return "algo-1", 1
    resource = json.loads(paths.processing_resource_config.read_text())
    return resource.get("current_host", "algo-1"), len(resource.get("hosts", [])) or 1


def prepare(args: argparse.Namespace, paths: SageMakerPaths) -> dict:
    """Trains (or loads) the tokenizer, writes train/validation shards; returns a summary."""
    raw, tokenizer_input, outputs = _local_paths(paths, args.input_name)
    if not raw.is_dir():
        raise PrepareError(f"input '{args.input_name}' ({raw}): missing")
    files = list_files(raw)
    texts = [f for f in files if is_text_file(f)]
    if not texts:
        raise PrepareError(
            f"input '{args.input_name}' ({raw}): no .txt or .jsonl file"
            + (f" (found {', '.join(f.name for f in files[:5])})" if files else " (empty)")
        )
    for name, directory in outputs.items():
        if directory.is_dir() and any(directory.iterdir()):
            raise PrepareError(
                f"output '{name}' ({directory}): not empty; refusing to mix with earlier outputs"
            )
        directory.mkdir(parents=True, exist_ok=True)

    host, hosts = _host(paths)
    if tokenizer_input is not None:
        tokenizer = load_tokenizer(tokenizer_input / TOKENIZER_FILE)
    elif hosts > 1:
        raise PrepareError(
            f"{hosts} instances would each train a different tokenizer on their own text: "
            f"give a 'tokenizer' input, or run on one instance"
        )
    else:
        tokenizer = train_tokenizer(iter_texts(texts), args.vocab_size)
    save_tokenizer(tokenizer, outputs[TOKENIZER_CHANNEL] / TOKENIZER_FILE)

    suffix = f"-{host}" if hosts > 1 else ""
    meta = dict(
        vocab_size=tokenizer.get_vocab_size(),
        eos_id=eos_id(tokenizer),
        fingerprint=fingerprint(tokenizer),
        shard_size=args.shard_size_tokens,
    )
    train = ShardWriter(outputs[TRAIN_CHANNEL], f"{TRAIN_CHANNEL}{suffix}", **meta)
    validation = ShardWriter(outputs[VALIDATION_CHANNEL], f"{VALIDATION_CHANNEL}{suffix}", **meta)
    period = round(1 / args.validation_fraction) if args.validation_fraction > 0 else 0
    with train, validation:
        documents = encode_pieces(
            tokenizer,
            iter_pieces(texts),
            lambda i: validation if period and i % period == period - 1 else train,
        )
    if period and validation.total_tokens == 0:
        raise PrepareError(
            f"--validation-fraction {args.validation_fraction} holds out every {period}th document, "
            f"but there are only {documents}: raise it, or pass 0 to let training hold out a slice"
        )
    return {
        "documents": documents,
        "files": len(texts),
        "vocab_size": tokenizer.get_vocab_size(),
        "tokenizer_fingerprint": fingerprint(tokenizer),
        TRAIN_CHANNEL: {"tokens": train.total_tokens, "shards": len(train.paths)},
        VALIDATION_CHANNEL: {"tokens": validation.total_tokens, "shards": len(validation.paths)},
    }


def main(argv: list[str]) -> int:
    """Entry point: exit 0 on success; otherwise the reason in output/message and a non-zero exit."""
    paths = SageMakerPaths.from_env()
    try:
        args = parse_args(argv)
    except PrepareError as error:
        write_message(paths.message, str(error))
        return 2
    try:
        summary = prepare(args, paths)
    except Exception as error:  # noqa: BLE001 (any failure must reach output/message)
        write_failure(paths.message, error)
        return 1
    print(f"prepare: {json.dumps(summary)}", flush=True)
    return 0
