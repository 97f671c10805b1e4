"""End to end: `prepare` turns raw text into shards, and `train` learns from them as its channels."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from jax_llm.contract.metrics import METRIC_DEFINITIONS
from tests.support import REPO

STDLIB = Path(sysconfig.get_paths()["stdlib"])
VOCAB = 600


def python_m_jax_llm(root: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Runs the image's entry point on the host with `root` as /opt/ml."""
    env = {
        **os.environ,
        "SAGEMAKER_BASE_DIR": str(root),
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": str(REPO / "containers" / "jax-llm"),
    }
    return subprocess.run(
        [sys.executable, "-m", "jax_llm", *args],
        env=env,
        cwd=root.parent,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def metric(log: str, name: str) -> list[float]:
    [regex] = [m["Regex"] for m in METRIC_DEFINITIONS if m["Name"] == name]
    return [float(v) for v in re.findall(regex, log)]


@pytest.mark.slow
def test_train_learns_from_the_shards_and_tokenizer_that_prepare_wrote(tmp_path):
    processing = tmp_path / "processing-job"
    raw = processing / "processing" / "input" / "raw"
    raw.mkdir(parents=True)
    for i, path in enumerate(sorted((STDLIB / "email").glob("*.py"))):  # 20 documents, ~360 KB
        shutil.copyfile(path, raw / f"{i:02d}-{path.stem}.txt")
    prepared = python_m_jax_llm(
        processing,
        "prepare",
        "--vocab-size",
        str(VOCAB),
        "--validation-fraction",
        "0.1",
        "--shard-size-tokens",
        "30000",
    )
    assert prepared.returncode == 0, prepared.stderr
    summary = json.loads(prepared.stdout.split("prepare: ", 1)[1])
    assert summary["train"]["shards"] > 1

    # A training job whose channels are prepare's outputs, copied as S3 would deliver them.
    training = tmp_path / "training-job"
    config = training / "input" / "config"
    config.mkdir(parents=True)
    channels = ("train", "validation", "tokenizer")
    for name in channels:
        shutil.copytree(processing / "processing" / "output" / name, training / "input" / "data" / name)
    (config / "inputdataconfig.json").write_text(
        json.dumps(
            {
                name: {"TrainingInputMode": "FastFile", "S3DistributionType": "FullyReplicated"}
                for name in channels
            }
        )
    )
    (config / "resourceconfig.json").write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
    (config / "hyperparameters.json").write_text(
        json.dumps(
            {
                "preset": '"tiny"',
                "max_steps": "8",
                "batch_size": "8",
                "seq_len": "64",
                "learning_rate": "0.003",
                "warmup_steps": "2",
                "log_every": "4",
                "eval_every": "8",
                "eval_batches": "2",
                "checkpoint_every": "100",
                "seed": "3",
            }
        )
    )
    trained = python_m_jax_llm(training, "train")
    log = trained.stdout + trained.stderr
    assert trained.returncode == 0, log[-4000:]

    # It trained on prepare's token counts, with prepare's validation split, not a held-out slice of train.
    assert (
        f"train {summary['train']['tokens']} tokens, validation {summary['validation']['tokens']} tokens,"
        in log
    )
    model = training / "model"
    assert (model / "tokenizer.json").read_bytes() == (
        processing / "processing" / "output" / "tokenizer" / "tokenizer.json"
    ).read_bytes()
    assert json.loads((model / "config.json").read_text())["model"]["vocab_size"] >= VOCAB
    losses = metric(log, "train_loss")
    [val_loss] = metric(log, "val_loss")[-1:]
    assert losses and all(math.isfinite(x) for x in losses + [val_loss])
    assert val_loss < math.log(VOCAB)  # better than a uniform guess: it learnt from the tokens
