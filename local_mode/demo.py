"""`make demo`: the whole lifecycle on this machine, synth -> prepare -> train -> package -> serve -> invoke.

The corpus is the Python standard library's own source, which exists offline wherever Python does.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import subprocess
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

from jax_llm.contract.paths import (
    DATA_CHANNELS,
    LOSS_CURVES_PNG,
    MODEL_ARCHIVE,
    RAW_INPUT,
    VALIDATION_CHANNEL,
)
from jax_llm.host_tools import held_out_loss, save_initial_model
from local_mode import container_engine, tracking
from local_mode.endpoint import LocalEndpoint
from local_mode.packaging import package_model
from local_mode.runner import REPO, run_processing, run_training, say

PROMPTS = ("def __init__(self", "import os\n", "class ", "    for i in range(")
# Not code a person writes: codec tables and doc dumps (encodings, pydoc_data), repetitive test asserts, and
# site-packages, which is not the standard library.
SKIPPED_PACKAGES = frozenset(
    {
        "encodings",
        "pydoc_data",
        "test",
        "tests",
        "idlelib",
        "lib2to3",
        "site-packages",
        "turtledemo",
        "ensurepip",
    }
)
# The tiny preset (0.2M parameters at a 2048 vocabulary) at a high learning rate learns Python's shape fast.
DEMO_HYPERPARAMETERS = {
    "preset": "tiny",
    "batch_size": 32,
    "seq_len": 128,
    "learning_rate": 3e-3,
    "warmup_steps": 50,
    "log_every": 25,
    "eval_every": 200,
    "eval_batches": 10,
    "checkpoint_every": 0,
    "seed": 0,
}
SAMPLE_PARAMETERS = {"max_new_tokens": 48, "temperature": 0.8, "top_k": 40, "do_sample": True, "seed": 0}
EXPERIMENT = "demo"  # the MLflow experiment of the demo's two runs (trained and untrained)
UNTRAINED_RUN = "demo-untrained"
HELD_OUT_METRIC = "held_out_loss"  # both models on the same validation tokens: the comparison in `mlflow ui`


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's knobs; the defaults finish in under 10 minutes on a 2-core CPU (docs/benchmarks.md)."""
    parser.add_argument("--steps", type=int, default=600, help="training steps (default %(default)s)")
    parser.add_argument("--corpus-mb", type=float, default=4.0, help="MB of stdlib source to train on")
    parser.add_argument("--vocab-size", type=int, default=2048, help="BPE vocabulary trained by prepare")
    parser.add_argument("--skip-synth", action="store_true", help="do not run `cdk synth`")


class StageFailed(RuntimeError):
    """A stage that cannot go on; the runner has already said why."""


class Stages:
    """Numbered progress lines with the wall time of each stage."""

    def __init__(self, total: int):
        self.total, self.done, self.start = total, 0, time.monotonic()
        self.timings: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, title: str) -> Iterator[None]:
        """Announces the stage, then its time, or that it failed (StageFailed carries why)."""
        self.done += 1
        say(f"[{self.done}/{self.total}] {title} ...")
        began = time.monotonic()
        try:
            yield
        except StageFailed:
            say(f"[{self.done}/{self.total}] {title}: FAILED after {time.monotonic() - began:.1f} s")
            raise
        self.timings[title] = time.monotonic() - began
        say(f"[{self.done}/{self.total}] {title}: done in {self.timings[title]:.1f} s")

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start


def synth(out_dir: Path) -> list[Path]:
    """`cdk synth --quiet` (cdk-nag runs inside; an open finding fails it); returns the templates."""
    done = subprocess.run(
        [str(REPO / "node_modules" / ".bin" / "cdk"), "synth", "--quiet", "--output", str(out_dir)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise StageFailed(f"cdk synth failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return sorted(out_dir.glob("*.template.json"))


def build_corpus(destination: Path, max_bytes: int) -> tuple[int, int]:
    """Copies stdlib modules (as .txt, one document each) until `max_bytes`; returns (files, bytes)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    destination.mkdir(parents=True, exist_ok=True)
    files = total = 0
    for source in sorted(stdlib.rglob("*.py")):
        relative = source.relative_to(stdlib)
        if SKIPPED_PACKAGES.intersection(relative.parts):
            continue
        try:
            text = source.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if total + len(text) > max_bytes:
            continue  # too big for what is left; a smaller module may still fit
        (destination / (relative.as_posix().replace("/", "__") + ".txt")).write_text(text, encoding="utf-8")
        files, total = files + 1, total + len(text)
    return files, total


def sample(endpoint: LocalEndpoint, label: str) -> str:
    """Prints each prompt's completion from the endpoint; returns what it printed."""
    say(f"samples {label}:")
    printed = []
    for prompt in PROMPTS:
        (answer,) = endpoint.invoke(prompt, **SAMPLE_PARAMETERS)
        printed.append(f"----- prompt {prompt!r}\n{prompt}{answer['generated_text']}\n")
        print(printed[-1], flush=True)
    return "\n".join(printed)


def untrained_archive(model_dir: Path, seed: int, destination: Path) -> Path:
    """The exported architecture at its step-0 initialization, packaged as the trained model is."""
    save_initial_model(model_dir, seed, destination / "model")
    package_model([destination / "model"], destination / MODEL_ARCHIVE)
    return destination / MODEL_ARCHIVE


def run(args: argparse.Namespace) -> int:
    """The demo; exit code 0 when every stage succeeded."""
    try:
        return _run(args)
    except StageFailed as failure:
        say(f"demo stopped: {failure}")
        return 1


def _run(args: argparse.Namespace) -> int:
    work = Path(args.workdir).resolve() / "demo"
    for previous in (work / "raw", work / "data"):  # the demo's own scratch: a rerun starts from nothing
        shutil.rmtree(previous, ignore_errors=True)
    stages = Stages(total=3 if args.skip_synth else 4)
    templates: list[Path] = []
    engine = container_engine.engine(args.docker, log=say)  # built once, for every job below
    if not args.skip_synth:
        with stages.stage("cdk synth: every stack in app.py, cdk-nag checks included"):
            templates = synth(REPO / "cdk.out")
            say(f"templates: {', '.join(str(t) for t in templates)}")

    data = work / "data"
    with stages.stage("processing job `prepare`: BPE tokenizer and token shards from the stdlib's source"):
        files, size = build_corpus(work / "raw", int(args.corpus_mb * 1e6))
        say(f"corpus: {files} modules of the Python standard library, {size / 1e6:.1f} MB, in {work / 'raw'}")
        prepared = run_processing(
            args.workdir,
            "demo-prepare",
            inputs={RAW_INPUT: work / "raw"},
            outputs={n: data / n for n in DATA_CHANNELS},
            arguments=["prepare", "--vocab-size", str(args.vocab_size), "--validation-fraction", "0.05"],
            engine=engine,
        )
        if not prepared.ok:
            raise StageFailed(f"prepare failed: {prepared.failure_reason.splitlines()[0]}")

    # A shorter --steps keeps the warmup inside the run (the trainer refuses warmup_steps > max_steps).
    warmup = min(DEMO_HYPERPARAMETERS["warmup_steps"], max(1, args.steps // 10))
    hyperparameters = {**DEMO_HYPERPARAMETERS, "max_steps": args.steps, "warmup_steps": warmup}
    environment = tracking.environment(None, EXPERIMENT, args.workdir, docker=args.docker)
    with stages.stage(f"training job `train`: tiny GPT, {args.steps} steps"):
        trained = run_training(
            args.workdir,
            "demo-train",
            hyperparameters=hyperparameters,
            channels={n: data / n for n in DATA_CHANNELS},
            engine=engine,
            environment=environment,
        )
        if not trained.ok:
            raise StageFailed(f"training failed: {trained.failure_reason.splitlines()[0]}")
        plot = trained.trees["algo-1"].output_data / LOSS_CURVES_PNG

    with stages.stage("endpoint `serve`: an untrained model, then the trained one, same prompts"):
        model_dir, seed = trained.trees["algo-1"].model, DEMO_HYPERPARAMETERS["seed"]
        untrained = untrained_archive(model_dir, seed, trained.output_dir.parent / "untrained")
        samples = {}
        for label, archive in (
            ("before training (the step-0 initialization)", untrained),
            (f"after {args.steps} steps", trained.model_archive),
        ):
            with LocalEndpoint(archive, work / "endpoint", engine=engine, log=lambda line: None) as endpoint:
                endpoint.wait_until_healthy()
                samples[archive] = sample(endpoint, label)
    if environment:
        record_runs(
            environment[tracking.URI_ENV],
            hyperparameters,
            data / VALIDATION_CHANNEL,
            {
                "demo-train": (model_dir, samples[trained.model_archive]),
                UNTRAINED_RUN: (untrained.parent / "model", samples[untrained]),
            },
        )

    say(f"finished in {stages.elapsed:.0f} s; where things are:")
    say(f"  model archive (what SageMaker uploads to S3): {trained.model_archive}")
    say(f"  training trees (/opt/ml per host):            {trained.trees['algo-1'].root}")
    say(f"  loss plot:                                    {plot}")
    listed = ", ".join(map(str, templates)) or "(synth skipped)"
    say(f"  CloudFormation templates:                     {listed}")
    if environment:
        look = tracking.how_to_look(environment[tracking.URI_ENV])
        say(f"  MLflow runs (untrained and trained):          {look}")
    return 0


def record_runs(
    uri: str, hyperparameters: dict, validation: Path, models: dict[str, tuple[Path, str]]
) -> None:
    """Adds each model's held-out loss and samples to its MLflow run: the trainer's own run for the trained
    model, a new one (step 0, same hyperparameters) for the untrained one."""
    for run_name, (model_dir, text) in models.items():
        loss = held_out_loss(model_dir, validation)
        existing = tracking.run_id_of(uri, EXPERIMENT, run_name) if run_name != UNTRAINED_RUN else None
        params = {**hyperparameters, "max_steps": 0} if existing is None else None
        tracking.record(
            uri,
            existing,
            experiment=EXPERIMENT,
            run_name=run_name,
            params=params,
            metrics={HELD_OUT_METRIC: loss},
            artifacts={"samples.txt": text},
        )
        say(f"MLflow run {run_name}: {HELD_OUT_METRIC}={loss:.4f}, samples.txt")
