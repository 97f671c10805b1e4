"""Will it fit? Per-GPU bytes of a training or serving setting, from the checked-in `memory_plan.json`.

The table is written by `python -m jax_llm plan --write-table` (`training/memory_plan.py`), which
compiles the real train step with XLA for an abstract mesh and reads `compiled.memory_analysis()`;
a test recompiles some of its rows and compares. This module only does arithmetic on it, with the
stdlib, so `cdk synth` can refuse a setting that cannot fit without importing JAX.

Training, per GPU, for `m` sequences of `T` tokens per micro-batch on that GPU and an `fsdp`-way split:
    parameters 4 N / F + AdamW moments 8 N / F + gradients 4 N / F      (fp32; N parameters, F = fsdp)
    + activations and other temporaries: a + c1 m T + c2 m T^2          (fitted to XLA's temp bytes)
Serving, per GPU, over the `shards` GPUs the model is split across (1: one GPU holds it all):
    weights N x SERVING_WEIGHT_BYTES + KV cache slots x context x 2 x layers x kv_heads x head_dim x 2 (bf16)
    + prefill logits prefill_rows x context x vocab x 4 (f32), all / shards (the logits are not split)
A GPU may use `MEMORY_FRACTION` of its memory (XLA_PYTHON_CLIENT_MEM_FRACTION in cdk.json).
"""

from __future__ import annotations

import dataclasses
import json
from functools import lru_cache
from pathlib import Path

from jax_llm.contract.instances import InstanceType

TABLE_FILE = Path(__file__).with_name("memory_plan.json")
MEMORY_FRACTION = 0.90  # of a GPU's memory XLA may take: trainingEnvironment's XLA_PYTHON_CLIENT_MEM_FRACTION
SERVING_PREFILL_ROWS = 8  # prompts prefilled at once on a GPU (serving's max_prefill_batch default there)
# Today's loader keeps the exported float32 weights on one GPU; issue 21 items 5 and 6 (bf16 weights,
# tensor parallelism over an instance's GPUs) change these two facts, and with them every serving check.
SERVING_WEIGHT_BYTES = 4
SERVING_SHARDS_OVER_GPUS = False
GIB = 1024**3


@lru_cache(maxsize=1)
def table() -> dict:
    """The checked-in plan table (see `training/memory_plan.py` for how it is made)."""
    return json.loads(TABLE_FILE.read_text())


def gib(n: float) -> str:
    return f"{n / GIB:.1f} GiB"


@dataclasses.dataclass(frozen=True)
class TrainingNeed:
    """Bytes one GPU needs for one training step."""

    parameters: int
    optimizer: int
    gradients: int
    activations: int  # activations and every other XLA temporary (gathered weights, logits, ...)

    @property
    def total(self) -> int:
        return self.parameters + self.optimizer + self.gradients + self.activations

    def describe(self) -> str:
        return (
            f"{gib(self.total)} per GPU = parameters {gib(self.parameters)} + AdamW state "
            f"{gib(self.optimizer)} + gradients {gib(self.gradients)} + activations and temporaries "
            f"{gib(self.activations)}"
        )


def training_need(
    preset: str, seq_len: int, remat: bool, fsdp: int, rows_per_device: int, sharded: bool = True
) -> TrainingNeed:
    """Per-GPU bytes of a train step; `sharded=False` (fsdp=false) keeps whole state on every GPU."""
    entry = table()["presets"][preset]
    n, f = entry["num_params"], fsdp if sharded else 1
    fit = entry["training"]["remat" if remat else "no_remat"]
    activations = fit["a"] + rows_per_device * (fit["c1"] * seq_len + fit["c2"] * seq_len**2)
    return TrainingNeed(4 * n // f, 8 * n // f, 4 * n // f, int(activations))


def usable_bytes(instance: InstanceType) -> int:
    """What XLA may allocate on one GPU of `instance`."""
    return int(instance.gpu_memory_bytes * MEMORY_FRACTION)


def largest_rows_per_device(
    preset: str, seq_len: int, remat: bool, fsdp: int, instance: InstanceType, sharded: bool = True
) -> int:
    """The most sequences per GPU per micro-batch that fit (0: not even one)."""
    fixed = training_need(preset, seq_len, remat, fsdp, 0, sharded)
    per_row = training_need(preset, seq_len, remat, fsdp, 1, sharded).total - fixed.total
    room = usable_bytes(instance) - fixed.total
    return max(0, room // per_row) if per_row > 0 else 0


def grad_accum_that_fits(batch_size: int, devices: int, rows_per_device: int) -> int | None:
    """The fewest micro-batches per step with at most `rows_per_device` rows per GPU that split `batch_size`
    evenly (batch_size / accum a multiple of `devices`); None when there is none."""
    if rows_per_device < 1:
        return None
    for accum in range(max(1, -(-batch_size // (rows_per_device * devices))), batch_size + 1):
        if batch_size % accum == 0 and (batch_size // accum) % devices == 0:
            return accum
    return None


@dataclasses.dataclass(frozen=True)
class ServingNeed:
    """Bytes one GPU needs to serve."""

    weights: int
    kv_cache: int
    prefill_logits: int

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.prefill_logits

    def describe(self) -> str:
        return (
            f"{gib(self.total)} per GPU = weights {gib(self.weights)} + KV cache {gib(self.kv_cache)} "
            f"+ prefill logits {gib(self.prefill_logits)}"
        )


def serving_need(preset: str, context: int, slots: int, shards: int = 1) -> ServingNeed:
    """Per-GPU bytes of the server with `slots` decode slots of `context` tokens, split over `shards` GPUs."""
    entry = table()["presets"][preset]
    kv_per_token = 2 * entry["n_layers"] * entry["kv_heads"] * entry["head_dim"] * 2  # k and v, bf16
    logits = SERVING_PREFILL_ROWS * context * entry["vocab_size"] * 4
    weights = SERVING_WEIGHT_BYTES * entry["num_params"] // shards
    return ServingNeed(weights, slots * context * kv_per_token // shards, logits)
