"""The exported model directory (`/opt/ml/model`): what training writes and serving loads.

    model/
      config.json     {"format_version": 1, "model": ModelConfig fields, ...extra (training metadata)}
      tokenizer.json  the `tokenizers` tokenizer the model was trained with
      params.npz      float32 parameters keyed by their dotted path in the NNX module tree
      metrics.json    final metrics of the run (written by the trainer)
      chat_template.jinja  how chat messages become a prompt (`model/chat_template.py`)
      compile_cache/  optional (contract.serving.COMPILE_CACHE_DIR): compilation-cache entries of the
                      serving programs, made on the serving device kind; serving starts from them

Parameters are stored as plain float32 arrays so that any tool can read them (numpy has no
bfloat16); serving casts to its compute dtype on load.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, ContextManager

import jax
import numpy as np
from flax import nnx

from jax_llm.contract.paths import METRICS_FILE
from jax_llm.model.chat_template import write_chat_template
from jax_llm.model.config import ModelConfig
from jax_llm.model.gpt import GPT

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
PARAMS_FILE = "params.npz"


def _flat_params(model: GPT) -> dict[str, np.ndarray]:
    flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
    return {".".join(map(str, path)): np.asarray(jax.device_get(var.get_value()), np.float32) for path, var in flat}


def save_model(
    model_dir: Path,
    model: GPT,
    tokenizer_file: Path,
    metrics: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Writes config, tokenizer, chat template, parameters and metrics into `model_dir` (created if needed)."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    config = {"format_version": FORMAT_VERSION, "model": dataclasses.asdict(model.config), **(extra or {})}
    (model_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    if Path(tokenizer_file).resolve() != (model_dir / TOKENIZER_FILE).resolve():
        shutil.copyfile(tokenizer_file, model_dir / TOKENIZER_FILE)
    write_chat_template(model_dir)
    np.savez(model_dir / PARAMS_FILE, **_flat_params(model))
    if metrics is not None:
        (model_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")


def read_model_config(model_dir: Path, **overrides: Any) -> ModelConfig:
    """The exported ModelConfig, with field overrides (e.g. compute_dtype="bfloat16" for serving on GPU)."""
    config = json.loads((Path(model_dir) / CONFIG_FILE).read_text())
    if config.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{model_dir / CONFIG_FILE}: format_version {config.get('format_version')!r} is not {FORMAT_VERSION}")
    return ModelConfig(**{**config["model"], **overrides})


def load_model(
    model_dir: Path, *, phase: Callable[[str], ContextManager] | None = None, **overrides: Any
) -> GPT:
    """Rebuilds the GPT from an exported directory. Raises if any parameter is missing or misshapen.

    `phase(name)`, when given, wraps the reading ("model_read") and the device placement ("device_transfer")
    of each parameter: the server's start budget. Parameters are read one at a time, so host memory holds
    one parameter beside the placed model, never a second copy of the whole."""
    phase = phase or (lambda name: contextlib.nullcontext())
    model_dir = Path(model_dir)
    with phase("model_read"):
        config = read_model_config(model_dir, **overrides)
        model = nnx.eval_shape(lambda: GPT(config, rngs=nnx.Rngs(0)))  # structure only, no allocation
        state = nnx.state(model, nnx.Param)
    with np.load(model_dir / PARAMS_FILE) as stored:
        expected = set()
        for path, var in nnx.to_flat_state(state):
            key = ".".join(map(str, path))
            expected.add(key)
            if key not in stored:
                raise ValueError(f"{model_dir / PARAMS_FILE}: parameter {key} is missing")
            with phase("model_read"):
                value = stored[key]  # the .npz member is read (and decompressed, if it was) only here
            if value.shape != var.get_value().shape:
                raise ValueError(f"{model_dir / PARAMS_FILE}: {key} has shape {value.shape}, expected {var.get_value().shape}")
            with phase("device_transfer"):
                var.set_value(jax.numpy.asarray(value, dtype=var.get_value().dtype).block_until_ready())
        unexpected = set(stored.files) - expected
        if unexpected:
            raise ValueError(f"{model_dir / PARAMS_FILE}: unexpected parameters {sorted(unexpected)[:5]}")
    with phase("device_transfer"):
        nnx.update(model, state)
    return model
