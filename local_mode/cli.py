"""`python -m local_mode {prepare,train,serve,transform,compile-cache,demo}`: arguments to runner calls."""

from __future__ import annotations

import argparse
import signal
import time
from pathlib import Path

from jax_llm.contract.paths import COMPRESSION_TYPES, DATA_CHANNELS, RAW_INPUT, TRAIN_CHANNEL
from jax_llm.contract.serving import COMPILE_CACHE_DIR, SERVING_PORT
from local_mode import container_engine, demo, tracking
from local_mode.base_image import BaseImageError
from local_mode.endpoint import EndpointError, LocalEndpoint
from local_mode.packaging import PackagingError
from local_mode.runner import run_processing, run_training, say
from local_mode.transform import TransformError, run_transform
from local_mode.tree import TreeError, parse_cli_value

WORKDIR = Path(".local-mode")


def _job_name(kind: str) -> str:
    return f"jax-llm-{kind}-{time.strftime('%Y%m%d-%H%M%S')}"


def _hyperparameter(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key, parse_cli_value(value)


def parser() -> argparse.ArgumentParser:
    """The command line: one subcommand per SageMaker job kind, plus the demo."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--workdir", type=Path, default=WORKDIR, help="where job trees and outputs go (default %(default)s)"
    )
    common.add_argument(
        "--docker",
        action="store_true",
        help="build the image and run the job in it with the tree at /opt/ml (Docker or Podman; "
        "LOCAL_MODE_ENGINE=docker|podman forces one)",
    )
    top = argparse.ArgumentParser(prog="python -m local_mode", description=__doc__)
    commands = top.add_subparsers(dest="command", required=True)

    prepare = commands.add_parser(
        "prepare", parents=[common], help="processing job: raw text -> tokenizer and token shards"
    )
    prepare.add_argument("--raw", type=Path, required=True, help="directory of .txt/.jsonl files")
    prepare.add_argument("--output", type=Path, required=True, help="gets tokenizer/, train/, validation/")
    prepare.add_argument("args", nargs=argparse.REMAINDER, help="more ContainerArguments after `--`")

    train = commands.add_parser(
        "train", parents=[common], help="training job on 1..N local hosts; writes model.tar.gz"
    )
    for channel in DATA_CHANNELS:
        train.add_argument(
            f"--{channel}", type=Path, required=channel == TRAIN_CHANNEL, help=f"the {channel} channel's data"
        )
    train.add_argument(
        "--hp",
        type=_hyperparameter,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a hyperparameter, typed as in the SDK (3 is a number, tiny a string); repeatable",
    )
    train.add_argument("--hosts", type=int, default=1, help="training processes standing in for algo-1..N")
    train.add_argument("--instance-type", default="local")
    train.add_argument(
        "--checkpoints", type=Path, help="checkpoint store (the S3 prefix): restored in, copied out"
    )
    train.add_argument("--job-name")
    train.add_argument(
        "--entry-point", help="script mode: the team's own script (train.py, a module or a .sh)"
    )
    train.add_argument("--source-dir", type=Path, help="script mode: the directory holding --entry-point")
    train.add_argument(
        "--tracking-uri",
        help="MLflow: a server URL, a local store or a SageMaker managed MLflow ARN; `none` turns tracking "
        "off (default: the SQLite store <workdir>/mlflow.db; off with --docker)",
    )
    train.add_argument("--experiment", default=tracking.DEFAULT_EXPERIMENT, help="MLflow experiment")
    train.add_argument(
        "--compression",
        choices=COMPRESSION_TYPES,
        default="GZIP",
        help="OutputDataConfig.CompressionType: GZIP writes output/model.tar.gz, NONE the model's files "
        "under output/model/ (what a ModelDataSource S3 prefix serves without an unpack)",
    )

    serve = commands.add_parser(
        "serve", parents=[common], help="endpoint: model data into a fresh tree's model/, then serve it"
    )
    serve.add_argument(
        "--model",
        type=Path,
        required=True,
        help="a model.tar.gz from `train` (unpacked), or an uncompressed model directory (copied as it is)",
    )
    serve.add_argument("--port", type=int, default=SERVING_PORT)
    serve.add_argument("--entry-point", help="the team's inference handler (inference.py) in --source-dir")
    serve.add_argument("--source-dir", type=Path, help="the directory holding --entry-point")

    transform = commands.add_parser(
        "transform",
        parents=[common],
        help="batch transform job: the model served, each line of --input one request, answers in "
        "--output/<input name>.out",
    )
    transform.add_argument("--model", type=Path, required=True, help="model.tar.gz or a model directory")
    transform.add_argument("--input", type=Path, required=True, help="JSON Lines: one request per line")
    transform.add_argument("--output", type=Path, required=True, help="gets <input name>.out")
    transform.add_argument(
        "--max-concurrent",
        type=int,
        help="MaxConcurrentTransforms (default: what the container's /execution-parameters says)",
    )

    cache = commands.add_parser(
        "compile-cache",
        parents=[common],
        help="processing job: compile a model directory's serving programs into its compile_cache/, which "
        "every later start reads instead of compiling",
    )
    cache.add_argument("--model", type=Path, required=True, help="an uncompressed model directory")

    demo.add_arguments(
        commands.add_parser(
            "demo", parents=[common], help="the whole lifecycle: synth, prepare, train, serve, invoke"
        )
    )
    return top


def prepare(args: argparse.Namespace) -> int:
    """A processing job on --raw; its outputs land in --output/{tokenizer,train,validation}."""
    extra = args.args[1:] if args.args[:1] == ["--"] else args.args
    result = run_processing(
        args.workdir,
        _job_name("prepare"),
        inputs={RAW_INPUT: args.raw},
        outputs={n: args.output / n for n in DATA_CHANNELS},
        arguments=["prepare", *extra],
        engine=container_engine.engine(args.docker, log=say),
    )
    return 0 if result.ok else 1


def train(args: argparse.Namespace) -> int:
    """A training job on the given channels; model.tar.gz (uncompressed: model/) under the job's output/."""
    channels = {c: getattr(args, c) for c in DATA_CHANNELS if getattr(args, c)}
    if args.source_dir and not args.entry_point:
        raise TreeError("--source-dir needs --entry-point (the script in it to run)")
    environment = tracking.environment(args.tracking_uri, args.experiment, args.workdir, docker=args.docker)
    result = run_training(
        args.workdir,
        args.job_name or _job_name("train"),
        hyperparameters=dict(args.hp),
        channels=channels,
        hosts=args.hosts,
        instance_type=args.instance_type,
        checkpoints=args.checkpoints,
        engine=container_engine.engine(args.docker, log=say),
        entry_point=args.entry_point,
        source_dir=args.source_dir,
        environment=environment,
        compression=args.compression,
    )
    if environment:
        uri = environment[tracking.URI_ENV]
        say(f"MLflow run in experiment {args.experiment!r}: {tracking.how_to_look(uri)}")
    return 0 if result.ok else 1


def serve(args: argparse.Namespace) -> int:
    """Serves --model until Ctrl-C."""
    engine = container_engine.engine(args.docker, log=say)
    with LocalEndpoint(
        args.model,
        args.workdir / _job_name("endpoint"),
        port=args.port,
        engine=engine,
        entry_point=args.entry_point,
        source_dir=args.source_dir,
    ) as endpoint:
        endpoint.wait_until_healthy()
        say(f'healthy; try: curl -s {endpoint.url}/invocations -d \'{{"inputs": "def "}}\'; Ctrl-C stops it')
        endpoint.process.wait()
    return 0


def transform(args: argparse.Namespace) -> int:
    """A transform job over --input; answers in --output. A record answered with an error fails it (1)."""
    try:
        run_transform(
            args.model,
            args.input,
            args.output,
            args.workdir / _job_name("transform"),
            engine=container_engine.engine(args.docker, log=say),
            max_concurrent=args.max_concurrent,
        )
    except TransformError as error:
        say(f"transform job failed: {error}")
        return 1
    return 0


def compile_cache(args: argparse.Namespace) -> int:
    """A processing job adding compile_cache/ to --model (as a job would add it to the model's S3 prefix)."""
    if not args.model.is_dir():
        raise PackagingError(f"--model {args.model} is not a model directory (unpack a model.tar.gz first)")
    result = run_processing(
        args.workdir,
        _job_name("compile-cache"),
        inputs={"model": args.model},
        outputs={"compile_cache": args.model / COMPILE_CACHE_DIR},
        arguments=["compile-cache"],
        engine=container_engine.engine(args.docker, log=say),
    )
    return 0 if result.ok else 1


COMMANDS = {
    "prepare": prepare,
    "train": train,
    "serve": serve,
    "transform": transform,
    "compile-cache": compile_cache,
    "demo": demo.run,
}


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM stops local mode as Ctrl-C does: its containers are stopped, not left


def main(argv: list[str]) -> int:
    """Runs one subcommand; exit code 0 on success, 1 when the job failed, 2 on bad input."""
    args = parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return COMMANDS[args.command](args)
    except (
        TreeError,
        PackagingError,
        EndpointError,
        BaseImageError,
        container_engine.EngineError,
    ) as error:
        say(f"error: {error}")
        return 2
    except KeyboardInterrupt:
        return 130
