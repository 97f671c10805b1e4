"""`python -m jax_llm train` on one host as SageMaker runs it: SDK-quoted values, ignored keys present."""

import json
import math

import numpy as np

from jax_llm.contract.hyperparameters import TrainConfig
from jax_llm.model.export import load_model, read_model_config


def test_run_completes_with_sdk_style_hyperparameters(tiny_training_run):
    log = tiny_training_run.log
    assert '"preset": "tiny"' in log and '"max_steps": 24' in log  # quoted values decoded, others ignored
    assert not (tiny_training_run.root / "output" / "failure").exists()


def test_exported_model_loads_and_predicts(tiny_training_run):
    config = read_model_config(tiny_training_run.model_dir)
    assert config.vocab_size % 128 == 0 and config.max_seq_len == 64
    model = load_model(tiny_training_run.model_dir)
    logits, _ = model(np.arange(16, dtype=np.int32)[None])
    assert logits.shape == (1, 16, config.vocab_size) and np.isfinite(np.asarray(logits)).all()
    exported = json.loads((tiny_training_run.model_dir / "config.json").read_text())
    assert exported["hyperparameters"]["seed"] == 7
    assert (tiny_training_run.model_dir / "tokenizer.json").is_file()


def test_training_learns_and_final_metrics_are_recorded(tiny_training_run):
    metrics = json.loads((tiny_training_run.model_dir / "metrics.json").read_text())
    assert metrics["steps"] == 24 and metrics["tokens"] == 24 * 8 * 64
    assert metrics["val_loss"] < math.log(512) - 0.5  # clearly better than uniform over the tokenizer's vocab
    curves = json.loads((tiny_training_run.root / "output" / "data" / "loss_curves.json").read_text())
    train = [loss for _, loss in curves["train_loss"]]
    assert [step for step, _ in curves["train_loss"]] == [4, 8, 12, 16, 20, 24]
    assert train[-1] < train[0] - 0.5
    assert [step for step, _ in curves["val_loss"]] == [12, 24]
    png = (tiny_training_run.root / "output" / "data" / "loss_curves.png").read_bytes()
    assert png.startswith(b"\x89PNG")


def test_checkpoints_are_written_under_checkpoints(tiny_training_run):
    directory = tiny_training_run.root / "checkpoints" / "steps"
    steps = sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())
    assert steps == [12, 24]
    assert TrainConfig().keep_checkpoints >= 2
