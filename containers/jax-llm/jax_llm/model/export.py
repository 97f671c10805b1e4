"""The exported model directory (`/opt/ml/model`): what training writes and serving loads.

    model/
      config.json     {"format_version": 1 or 2, "model": ModelConfig fields, ...extra (training metadata)}
      tokenizer.json  the `tokenizers` tokenizer the model was trained with
      params.npz      parameters keyed by their dotted path in the NNX module tree
      metrics.json    final metrics of the run (written by the trainer)
      chat_template.jinja  how chat messages become a prompt (`model/chat_template.py`)
      compile_cache/  optional (contract.serving.COMPILE_CACHE_DIR): compilation-cache entries of the
                      serving programs, made on the serving device kind; serving starts from them

Format 1: float32 parameters, plain arrays any tool reads. Format 2: bfloat16 parameters, what a
server computing in bfloat16 wants (half the bytes to ship and load); numpy has no bfloat16, so
each is stored as its uint16 bit pattern and `config.json` says `"params_dtype": "bfloat16"` (an
older server refuses format 2 by its version instead of misreading the bits). A model served from
format 2 keeps its weights in bfloat16. Both load.

`ParamsWriter` writes params.npz one array at a time (a zip member each): the trainer streams a
sharded model through it without ever holding the whole model on one device or in host memory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import zipfile
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx

from jax_llm.contract.paths import METRICS_FILE
from jax_llm.model.chat_template import write_chat_template
from jax_llm.model.config import ModelConfig
from jax_llm.model.gpt import GPT, group_qkv_columns

FORMAT_VERSION = 1  # float32 parameters
BFLOAT16_FORMAT_VERSION = 2  # bfloat16 parameters stored as uint16 bit patterns
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
PARAMS_FILE = "params.npz"


def param_arrays(model: GPT) -> list[tuple[str, jax.Array]]:
    """(dotted key, array) of every parameter, in the module tree's order."""
    return [
        (".".join(map(str, path)), var.get_value())
        for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param))
    ]


class ParamsWriter:
    """params.npz written one array at a time, each cast to `dtype` ("float32" or "bfloat16") on the way."""

    def __init__(self, model_dir: Path, dtype: str = "float32"):
        if dtype not in ("float32", "bfloat16"):
            raise ValueError(f"exported parameters are float32 or bfloat16, not {dtype!r}")
        self.dtype = dtype
        self._zip = zipfile.ZipFile(Path(model_dir) / PARAMS_FILE, "w", zipfile.ZIP_STORED, allowZip64=True)

    def add(self, key: str, value) -> None:
        """Appends one parameter (any array on the host: numpy, or a fully addressable jax.Array)."""
        array = np.asarray(value).astype(jax.numpy.dtype(self.dtype))
        if self.dtype == "bfloat16":
            array = array.view(np.uint16)  # numpy's own formats know no bfloat16
        with self._zip.open(f"{key}.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)

    def close(self) -> None:
        """Finishes the zip's directory; the file is readable from here on."""
        self._zip.close()


def write_model_files(
    model_dir: Path,
    config: ModelConfig,
    tokenizer_file: Path,
    params_dtype: str = "float32",
    extra: dict[str, Any] | None = None,
) -> None:
    """Everything but the parameters and metrics: config.json, tokenizer, chat template."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    version = BFLOAT16_FORMAT_VERSION if params_dtype == "bfloat16" else FORMAT_VERSION
    stored = {"format_version": version, "model": dataclasses.asdict(config)}
    if params_dtype == "bfloat16":
        stored["params_dtype"] = params_dtype
    (model_dir / CONFIG_FILE).write_text(json.dumps({**stored, **(extra or {})}, indent=2) + "\n")
    if Path(tokenizer_file).resolve() != (model_dir / TOKENIZER_FILE).resolve():
        shutil.copyfile(tokenizer_file, model_dir / TOKENIZER_FILE)
    write_chat_template(model_dir)


def write_metrics(model_dir: Path, metrics: dict[str, Any]) -> None:
    """metrics.json: the run's final metrics."""
    (Path(model_dir) / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")


def save_model(
    model_dir: Path,
    model: GPT,
    tokenizer_file: Path,
    metrics: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    params_dtype: str = "float32",
) -> None:
    """Writes config, tokenizer, chat template, parameters and metrics into `model_dir` (created if needed)."""
    write_model_files(model_dir, model.config, tokenizer_file, params_dtype, extra)
    writer = ParamsWriter(model_dir, params_dtype)
    try:
        for key, value in param_arrays(model):
            writer.add(key, jax.device_get(value))
    finally:
        writer.close()
    if metrics is not None:
        write_metrics(model_dir, metrics)


def read_model_config(model_dir: Path, **overrides: Any) -> ModelConfig:
    """The exported ModelConfig, with field overrides (e.g. compute_dtype="bfloat16" for serving on GPU)."""
    config = json.loads((Path(model_dir) / CONFIG_FILE).read_text())
    if config.get("format_version") not in (FORMAT_VERSION, BFLOAT16_FORMAT_VERSION):
        raise ValueError(
            f"{model_dir / CONFIG_FILE}: format_version {config.get('format_version')!r} is not "
            f"{FORMAT_VERSION} or {BFLOAT16_FORMAT_VERSION}"
        )
    stored_dtype = config.get("params_dtype", "float32")
    if stored_dtype == "bfloat16":
        overrides = {"param_dtype": "bfloat16", **overrides}  # served as stored: no float32 copy on device
    return ModelConfig(**{**config["model"], **overrides})


def stored_params_dtype(model_dir: Path) -> str:
    """ "float32" (format 1) or "bfloat16" (format 2): how params.npz holds the weights."""
    return json.loads((Path(model_dir) / CONFIG_FILE).read_text()).get("params_dtype", "float32")


def load_model(
    model_dir: Path,
    *,
    phase: Callable[[str], AbstractContextManager] | None = None,
    place: Callable[[str, np.ndarray], jax.Array] | None = None,
    **overrides: Any,
) -> GPT:
    """Rebuilds the GPT from an exported directory. Raises if any parameter is missing or misshapen.

    `phase(name)`, when given, wraps the reading ("model_read") and the device placement ("device_transfer")
    of each parameter: the server's start budget. Parameters are read one at a time, so host memory holds
    one parameter beside the placed model, never a second copy of the whole. Each is cast to the model's
    param_dtype on the host, then handed to `place(name, array)` (default: the default device), which may
    split it over several devices. A `qkv_groups` override regroups the fused q/k/v kernels as it loads."""
    place = place or (lambda name, value: jax.device_put(value))
    phase = phase or (lambda name: contextlib.nullcontext())
    model_dir = Path(model_dir)
    with phase("model_read"):
        config = read_model_config(model_dir, **overrides)
        model = nnx.eval_shape(lambda: GPT(config, rngs=nnx.Rngs(0)))  # structure only, no allocation
        state = nnx.state(model, nnx.Param)
        bfloat16 = stored_params_dtype(model_dir) == "bfloat16"
    with np.load(model_dir / PARAMS_FILE) as stored:
        expected = set()
        for path, var in nnx.to_flat_state(state):
            key = ".".join(map(str, path))
            expected.add(key)
            if key not in stored:
                raise ValueError(f"{model_dir / PARAMS_FILE}: parameter {key} is missing")
            with phase("model_read"):
                value = stored[key]  # the .npz member is read (and decompressed, if it was) only here
                value = value.view(jax.numpy.bfloat16) if bfloat16 else value
            if value.shape != var.get_value().shape:
                raise ValueError(
                    f"{model_dir / PARAMS_FILE}: {key} has shape {value.shape}, expected {var.get_value().shape}"
                )
            if config.qkv_groups > 1 and key.endswith("attn.qkv.kernel"):
                value = group_qkv_columns(value, config, config.qkv_groups)
            with phase("device_transfer"):
                var.set_value(place(key, value.astype(var.get_value().dtype)).block_until_ready())
        unexpected = set(stored.files) - expected
        if unexpected:
            raise ValueError(f"{model_dir / PARAMS_FILE}: unexpected parameters {sorted(unexpected)[:5]}")
    with phase("device_transfer"):
        nnx.update(model, state)
    return model
