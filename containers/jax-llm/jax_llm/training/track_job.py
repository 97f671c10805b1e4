"""`python -m jax_llm track`: logs finished training jobs to MLflow from their outputs, outside the jobs.

The pipelines' training jobs run with network isolation, so nothing in them reaches a tracking server.
A step after training runs this instead (a processing job on the same image, with network): for each job
it reads `model.tar.gz` and the `output.tar.gz` beside it (the trainer's run record `mlflow_run.json`, the
loss curves), or, for a job that wrote its outputs uncompressed, the few files it needs from the `model/`
and `data/` prefixes beside each other, and logs one run with what the trainer would have logged live: its
parameters, the metric history step by step, the loss plot, curves and `metrics.json`, tagged from the
environment.

    track --model-uri s3://.../<job>/output/model.tar.gz --job-name <job>   one training job
    track --model-uri s3://.../<job>/output/model/ --job-name <job>         one, written uncompressed
    track --tuning-job <name> --output-path s3://<bucket>/tuning            every trial, as child runs
    track --model-uri model.tar.gz [--job-name N]                           archives on disk (local mode)

Exit 0 whatever happens to tracking (it must never fail the pipeline); 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tarfile
import tempfile
from collections.abc import Mapping
from pathlib import Path

from jax_llm.contract.paths import (
    LOSS_CURVES_JSON,
    LOSS_CURVES_PNG,
    METRICS_FILE,
    MODEL_ARCHIVE,
    MODEL_PREFIX,
    OUTPUT_ARCHIVE,
    OUTPUT_DATA_PREFIX,
)
from jax_llm.contract.tracking import JOB_NAME_ENV, PARENT_ENV, URI_ENV
from jax_llm.training import tracking

ARTIFACTS = (LOSS_CURVES_PNG, LOSS_CURVES_JSON, METRICS_FILE)  # from the loss curves and model/
MODEL_CONFIG = "config.json"  # model/'s description of the model, which the run's parameters fall back on


def parser() -> argparse.ArgumentParser:
    """The command line."""
    top = argparse.ArgumentParser(prog="python -m jax_llm track", description=__doc__.splitlines()[0])
    source = top.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--model-uri",
        help="a job's model.tar.gz (s3:// or a path; output.tar.gz beside it), or its uncompressed model/ prefix",
    )
    source.add_argument("--tuning-job", help="a tuning job: every trial is logged")
    top.add_argument("--job-name", help="the training job's name (with --model-uri)")
    top.add_argument("--output-path", help="the tuning job's S3OutputPath (with --tuning-job)")
    return top


def main(argv: list[str]) -> int:
    """Logs the jobs; 0 even when tracking fails (said on stderr), 2 on bad arguments."""
    args = parser().parse_args(argv)
    if args.tuning_job and not args.output_path:
        parser().error("--tuning-job needs --output-path (the trials' S3OutputPath)")
    if not os.environ.get(URI_ENV):
        print(f"{URI_ENV} is not set: nothing to track", flush=True)
        return 0
    try:
        if args.tuning_job:
            jobs = trial_names(_client("sagemaker"), args.tuning_job)
            print(f"tuning job {args.tuning_job}: {len(jobs)} trial(s) to log", flush=True)
            for job in jobs:
                log_job(
                    f"{args.output_path.rstrip('/')}/{job}/output/{MODEL_ARCHIVE}",
                    job,
                    parent_key=args.tuning_job,
                )
            tracking.finish_parent(os.environ, args.tuning_job)
        else:
            log_job(args.model_uri, args.job_name or Path(args.model_uri).parent.parent.name)
    except Exception as error:  # noqa: BLE001 - tracking must never fail the pipeline
        print(f"MLflow tracking stopped: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
    return 0


def _client(service: str):
    import boto3

    return boto3.client(service)


def trial_names(sagemaker, tuning_job: str) -> list[str]:
    """The tuning job's training jobs that left a model (Completed, or Stopped by early stopping)."""
    pages = sagemaker.get_paginator("list_training_jobs_for_hyper_parameter_tuning_job").paginate(
        HyperParameterTuningJobName=tuning_job
    )
    return sorted(
        s["TrainingJobName"]
        for page in pages
        for s in page["TrainingJobSummaries"]
        if s["TrainingJobStatus"] in ("Completed", "Stopped")
    )


def _fetch(uri: str, destination: Path) -> Path | None:
    """The file at `uri` (s3:// or a local path) in `destination`, or None when it does not exist."""
    if not uri.startswith("s3://"):
        return Path(uri) if Path(uri).is_file() else None
    bucket, _, key = uri[len("s3://") :].partition("/")
    target = destination / Path(key).name
    try:
        _client("s3").download_file(bucket, key, str(target))
    except Exception as error:  # noqa: BLE001 - botocore's ClientError (404) without importing botocore here
        if "404" in str(error) or "Not Found" in str(error):
            return None
        raise
    return target


def _fetch_into(uri: str, directory: Path) -> Path | None:
    """The file at `uri` copied into `directory`, or None when it does not exist."""
    directory.mkdir(parents=True, exist_ok=True)
    if uri.startswith("s3://"):
        return _fetch(uri, directory)
    if not Path(uri).is_file():
        return None
    return Path(shutil.copy(uri, directory))


def job_outputs(model_uri: str, scratch: Path) -> tuple[Path, Path] | None:
    """(model/, output/data/) of a finished job in `scratch`, or None when it left no model. From
    `model.tar.gz` and the `output.tar.gz` beside it; where there is no archive (a job written uncompressed,
    CompressionType NONE), from the `model/` and `data/` prefixes beside each other, only the files a run
    record needs (never the weights)."""
    if model_uri.endswith(MODEL_ARCHIVE):
        archive = _fetch(model_uri, scratch)
        if archive is not None:
            output = _fetch(model_uri[: -len(MODEL_ARCHIVE)] + OUTPUT_ARCHIVE, scratch)
            return _unpack(archive, scratch / "model"), _unpack(output, scratch / "output")
        model_uri = model_uri[: -len(MODEL_ARCHIVE)] + MODEL_PREFIX  # a tuning trial written uncompressed
    model_prefix = model_uri.rstrip("/")
    data_prefix = f"{model_prefix.rsplit('/', 1)[0]}/{OUTPUT_DATA_PREFIX}"
    model_dir, output_dir = scratch / "model", scratch / "output"
    if _fetch_into(f"{model_prefix}/{MODEL_CONFIG}", model_dir) is None:
        return None
    _fetch_into(f"{model_prefix}/{METRICS_FILE}", model_dir)
    for name in (tracking.RECORD_FILE, LOSS_CURVES_JSON, LOSS_CURVES_PNG):
        _fetch_into(f"{data_prefix}/{name}", output_dir)
    return model_dir, output_dir


def _unpack(archive: Path | None, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    if archive is not None:
        with tarfile.open(archive) as tar:
            tar.extractall(directory, filter="data")
    return directory


def run_record(model_dir: Path, output_dir: Path) -> dict:
    """The trainer's record of the run, or (a job from before records) what model/ says: the resolved
    hyperparameters and model config as parameters and the final metrics at the last step."""
    recorded = output_dir / tracking.RECORD_FILE
    if recorded.is_file():
        return json.loads(recorded.read_text())
    config = json.loads((model_dir / MODEL_CONFIG).read_text())
    params = {**config.get("hyperparameters", {}), **{f"model.{k}": v for k, v in config["model"].items()}}
    metrics_file = model_dir / METRICS_FILE
    final = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    step = int(final.get("steps", 0))
    metrics = [[k, final[k], step, None] for k in ("train_loss", "val_loss") if k in final]
    return {"params": {k: str(v) for k, v in params.items()}, "metrics": metrics}


def log_job(
    model_uri: str, job_name: str, *, parent_key: str | None = None, environ: Mapping[str, str] | None = None
) -> bool:
    """Logs one finished job as one run (a child of `parent_key`'s run when given); True when it all went."""
    environ = os.environ if environ is None else environ
    with tempfile.TemporaryDirectory(prefix="jax-llm-track-") as scratch:
        scratch_dir = Path(scratch)
        outputs = job_outputs(model_uri, scratch_dir)
        if outputs is None:
            print(f"{job_name}: no {model_uri}; not logged", file=sys.stderr, flush=True)
            return False
        model_dir, output_dir = outputs
        record = run_record(model_dir, output_dir)
        tracker = tracking.start({**environ, JOB_NAME_ENV: job_name, PARENT_ENV: parent_key or ""})
        tracker.log_params(record["params"])
        by_step: dict[tuple, dict[str, float]] = {}
        for name, value, step, stamp in record["metrics"]:
            by_step.setdefault((step, stamp), {})[name] = value
        for (step, stamp), values in by_step.items():
            tracker.log_metrics(values, step, stamp)
        tracker.log_artifacts([d / name for name in ARTIFACTS for d in (output_dir, model_dir)])
        tracker.close("FINISHED")
        ok = not getattr(tracker, "failed", True)
        print(
            f"{job_name}: {'logged' if ok else 'not logged'} ({len(record['metrics'])} metric values)",
            flush=True,
        )
        return ok
