"""Training hyperparameters: one typed `TrainConfig`, parsed from SageMaker's string-to-string map.

SageMaker writes `input/config/hyperparameters.json` as strings. The SDK JSON-encodes every value
(`"\\"125m\\""`, `"3"`, `"true"`), other clients send them raw (`"125m"`). The training toolkit's rule
covers both: try `json.loads`, keep the raw string when that fails. Keys SageMaker or the tuner add
for themselves are ignored; anything else unknown is an error, because a misspelt hyperparameter
that is silently ignored wastes a whole GPU job. Stdlib only: the CDK stack and tests import it.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
from pathlib import Path
from typing import Any

# Added by the SageMaker SDK / training toolkit and the tuner, never meant for the training code.
IGNORED_PREFIX = "sagemaker_"
IGNORED_KEYS = frozenset({"_tuning_objective_metric"})

# Mirrors jax_llm.model.config.PRESETS (which imports jax).
PRESETS = ("tiny", "125m", "350m", "1.3b", "tiny-llama", "3b", "7b", "7b-gqa", "13b")
COMPUTE_DTYPES = ("auto", "float32", "bfloat16")
# 256 byte symbols plus the EOS token: the smallest vocabulary a byte-level BPE can have.
MIN_VOCAB_SIZE = 257
MESH_SHAPE = re.compile(r"^(\d+)x(\d+)$")  # the `mesh` hyperparameter besides "auto": DATAxFSDP, e.g. 4x8


class HyperparameterError(ValueError):
    """A hyperparameter is unknown, of the wrong type or out of range. The message names the key."""

    def __init__(self, key: str, problem: str):
        self.key = key
        super().__init__(f"hyperparameter {key!r}: {problem}")


def _field(
    default: Any,
    meaning: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    choices: tuple[str, ...] | None = None,
) -> Any:
    meta = {"meaning": meaning, "minimum": minimum, "maximum": maximum, "choices": choices}
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a training run can be told. Defaults suit the 125m preset on one GPU host."""

    preset: str = _field(
        "125m",
        "model size: GPT-style tiny (tests), 125m, 350m, 1.3b; Llama-2-style "
        "tiny-llama (tests), 3b, 7b, 7b-gqa (8 kv heads), 13b",
        choices=PRESETS,
    )
    max_steps: int = _field(5000, "optimizer steps to train for", minimum=1)
    batch_size: int = _field(64, "global sequences per optimizer step, over all hosts and devices", minimum=1)
    seq_len: int = _field(
        1024, "tokens per training sequence (the model's context length)", minimum=8, maximum=8192
    )
    learning_rate: float = _field(
        6e-4, "peak AdamW learning rate, reached after warmup", minimum=0.0, maximum=1.0
    )
    min_lr_ratio: float = _field(
        0.1, "the cosine decay ends at learning_rate x this", minimum=0.0, maximum=1.0
    )
    warmup_steps: int = _field(200, "linear warmup from 0 to learning_rate (at most max_steps)", minimum=0)
    weight_decay: float = _field(
        0.1, "AdamW decoupled weight decay (matrices only, not norm scales)", minimum=0.0, maximum=1.0
    )
    adam_b1: float = _field(0.9, "AdamW first-moment decay", minimum=0.0, maximum=0.999999)
    adam_b2: float = _field(0.95, "AdamW second-moment decay", minimum=0.0, maximum=0.999999)
    grad_clip: float = _field(1.0, "clip the global gradient norm to this; 0 turns clipping off", minimum=0.0)
    grad_accum_steps: int = _field(
        1, "micro-batches per step (batch_size must be a multiple of it)", minimum=1
    )
    eval_every: int = _field(
        500, "evaluate on the validation set every N steps and at the end; 0: end only", minimum=0
    )
    eval_batches: int = _field(20, "validation batches per evaluation", minimum=1)
    checkpoint_every: int = _field(500, "save a checkpoint every N steps; 0: only on SIGTERM", minimum=0)
    keep_checkpoints: int = _field(3, "how many of the latest checkpoints to keep", minimum=1)
    log_every: int = _field(10, "log train metrics every N steps", minimum=1)
    seed: int = _field(0, "seed of parameter init and of the data order", minimum=0, maximum=2**31 - 1)
    vocab_size: int = _field(
        32000,
        "BPE vocabulary size when the tokenizer is trained here (no channel)",
        minimum=MIN_VOCAB_SIZE,
        maximum=262144,
    )
    fsdp: bool = _field(False, "shard parameters and optimizer state across all devices (FSDP)")
    remat: bool = _field(False, "recompute activations in the backward pass to save memory")
    mesh: str = _field(
        "auto",
        "device mesh DATAxFSDP (e.g. 4x8; product = all devices): parameters are "
        "sharded over FSDP (with fsdp=true), copied over DATA; auto: FSDP over each host's "
        "GPUs, DATA over hosts (flat FSDP when hosts have one GPU)",
    )
    compute_dtype: str = _field(
        "auto", "activation/matmul dtype; auto: bfloat16 on GPU, float32 on CPU", choices=COMPUTE_DTYPES
    )

    def __post_init__(self) -> None:
        match = MESH_SHAPE.match(self.mesh)
        if self.mesh != "auto" and not (match and int(match[1]) >= 1 and int(match[2]) >= 1):
            raise HyperparameterError(
                "mesh", f"expected 'auto' or DATAxFSDP with positive integers (e.g. 4x8), got {self.mesh!r}"
            )
        if self.batch_size % self.grad_accum_steps:
            raise HyperparameterError(
                "grad_accum_steps",
                f"batch_size={self.batch_size} must be a multiple of "
                f"grad_accum_steps={self.grad_accum_steps}",
            )

    @property
    def micro_batch_size(self) -> int:
        """Sequences per forward/backward pass (over all devices)."""
        return self.batch_size // self.grad_accum_steps


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def decode_hyperparameter(raw: Any) -> Any:
    """The training toolkit's rule: JSON if it parses, else the raw string."""
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _typed(key: str, raw: Any, kind: type) -> Any:
    value = decode_hyperparameter(raw)
    if kind is str:
        # "1.3b" stays a string; a JSON number for a string field keeps its raw text.
        return value if isinstance(value, str) else str(raw)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise HyperparameterError(key, f"expected a boolean (true or false), got {raw!r}")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():  # tuners may send "100.0"
            return int(value)
        raise HyperparameterError(key, f"expected an integer, got {raw!r}")
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise HyperparameterError(key, f"expected a number, got {raw!r}")
    raise TypeError(f"unsupported field type {kind}")


def _check_range(key: str, value: Any, meta: dict) -> None:
    if meta["choices"] is not None and value not in meta["choices"]:
        raise HyperparameterError(key, f"expected one of {list(meta['choices'])}, got {value!r}")
    if meta["minimum"] is not None and value < meta["minimum"]:
        raise HyperparameterError(key, f"expected at least {meta['minimum']}, got {value!r}")
    if meta["maximum"] is not None and value > meta["maximum"]:
        raise HyperparameterError(key, f"expected at most {meta['maximum']}, got {value!r}")


def parse_hyperparameters(raw: dict[str, Any]) -> TrainConfig:
    """Turns SageMaker's hyperparameter map into a TrainConfig; raises HyperparameterError naming the key."""
    kinds = {"str": str, "int": int, "float": float, "bool": bool}
    values: dict[str, Any] = {}
    for key, raw_value in raw.items():
        if key.startswith(IGNORED_PREFIX) or key in IGNORED_KEYS:
            continue
        if key not in FIELDS:
            close = difflib.get_close_matches(key, FIELDS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise HyperparameterError(key, f"unknown hyperparameter{hint}; expected one of {sorted(FIELDS)}")
        field = FIELDS[key]
        value = _typed(key, raw_value, kinds[field.type])
        _check_range(key, value, field.metadata)
        values[key] = value
    if "warmup_steps" in values and values["warmup_steps"] > values.get("max_steps", TrainConfig.max_steps):
        # Only an explicit value is an error: the default warmup is clamped to short runs.
        raise HyperparameterError("warmup_steps", f"expected at most max_steps, got {values['warmup_steps']}")
    return TrainConfig(**values)


def read_raw(path: Path) -> dict[str, str]:
    """`hyperparameters.json` as SageMaker wrote it (strings), or HyperparameterError naming the file."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except ValueError as err:
        raise HyperparameterError("<file>", f"{path} is not valid JSON: {err}") from None
    if not isinstance(raw, dict):
        raise HyperparameterError("<file>", f"{path} must hold a JSON object, got {type(raw).__name__}")
    return raw


def read_hyperparameters(path: Path) -> TrainConfig:
    """Reads and parses `hyperparameters.json`; a missing file means all defaults."""
    path = Path(path)
    if not path.exists():
        return TrainConfig()
    return parse_hyperparameters(read_raw(path))


def default_mesh_shape(process_count: int, local_devices: int) -> tuple[int, int]:
    """(data, fsdp) for mesh="auto": fsdp over one host's devices, data over hosts; one-device hosts: flat."""
    if local_devices == 1:
        return 1, process_count
    return process_count, local_devices


def mesh_shape(text: str, process_count: int, local_devices: int) -> tuple[int, int]:
    """The `mesh` hyperparameter ("auto" or "DATAxFSDP") as (data, fsdp) for a cluster of `process_count`
    hosts with `local_devices` each; ValueError when it does not multiply to the cluster's devices."""
    if text == "auto":
        return default_mesh_shape(process_count, local_devices)
    match = MESH_SHAPE.match(text)
    if not match:
        raise ValueError(f"expected 'auto' or DATAxFSDP (e.g. 4x8), got {text!r}")
    data, fsdp = int(match[1]), int(match[2])
    n_devices = process_count * local_devices
    if data * fsdp != n_devices:
        auto = "x".join(map(str, default_mesh_shape(process_count, local_devices)))
        raise ValueError(
            f"{text} is {data * fsdp} devices, but the cluster has {n_devices} ({process_count} "
            f"host(s) x {local_devices}); auto would be {auto}"
        )
    return data, fsdp


def describe() -> list[tuple[str, str, str, str]]:
    """(name, type, default, meaning) of each hyperparameter; a test checks docs/training.md's table."""
    return [(f.name, f.type, json.dumps(f.default), f.metadata["meaning"]) for f in FIELDS.values()]
