"""Will it fit? Per-GPU bytes of a training or serving setting, from the checked-in `memory_plan.json`.

The table is written by `python -m jax_llm plan --write-table` (`training/memory_plan.py`), which
compiles the real train step with XLA for an abstract mesh and reads `compiled.memory_analysis()`;
a test recompiles some of its rows and compares. This module only does arithmetic on it, with the
stdlib, so `cdk synth` can refuse a setting that cannot fit without importing JAX.

Training, per GPU, for `m` sequences of `T` tokens per micro-batch on that GPU and an `fsdp`-way split:
    parameters 4 N / F + AdamW moments 8 N / F + gradients 4 N / F      (fp32; N parameters, F = fsdp)
    + activations and other temporaries: a + c1 m T + c2 m T^2          (fitted to XLA's temp bytes)
Serving, per GPU, over the `shards` GPUs tensor parallelism splits the model across (1: one GPU holds it):
    weights: every split matrix / shards + what stays whole (embeddings, norms), at the served dtype's bytes
    + KV cache slots x context x 2 x layers x kv_heads x head_dim x 2 (bf16) / shards (split over the heads)
    + the largest prefill call's temporaries, over the padded lengths L up to the context at P rows each (at most
      prefill_rows, fewer for long L: P x L within the prefill token budget, `contract/serving.py`): its logits
      P x vocab x 4 (f32, each prompt's last token only; not split) and PREFILL_SCORE_BUFFERS f32 attention-score
      buffers P x heads x L^2 x 4 / shards (one layer's scores, masked scores and softmax, which XLA's analysis of
      the prefill holds at once), and one layer's activations P x L x (2 d_ff + q/k/v width) / shards + 3 d_model
`plan_serving` is the server's own choice of shards and decode slots (serving/engine/loader.py) and the one
synth checks an endpoint with: the fewest shards at which every requested slot fits, the KV cache sized from
what the weights leave. A GPU may use `MEMORY_FRACTION` of its memory (XLA_PYTHON_CLIENT_MEM_FRACTION: set in
cdk.json's trainingEnvironment for training, and by the server itself when its environment does not).
"""

from __future__ import annotations

import dataclasses
import json
from functools import lru_cache
from pathlib import Path

from jax_llm.contract.instances import InstanceType
from jax_llm.contract.serving import DEFAULT_PREFILL_TOKENS, doubling, prefill_rows_at

TABLE_FILE = Path(__file__).with_name("memory_plan.json")
MEMORY_FRACTION = 0.90  # of a GPU's memory XLA may take: trainingEnvironment's XLA_PYTHON_CLIENT_MEM_FRACTION
SERVING_PREFILL_ROWS = 8  # prompts prefilled at once on a GPU (serving's max_prefill_batch default there)
PREFILL_SCORE_BUFFERS = (
    3  # score-sized f32 buffers live at once in a prefill (serving/engine/memory_analysis.py)
)
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
    prefill: int  # the largest prefill's temporaries: logits and one layer's attention scores

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.prefill

    def describe(self) -> str:
        return (
            f"{gib(self.total)} per GPU = weights {gib(self.weights)} + KV cache {gib(self.kv_cache)} "
            f"+ prefill temporaries {gib(self.prefill)}"
        )


@dataclasses.dataclass(frozen=True)
class ServedModel:
    """What a server's memory depends on: the model's sizes and the bytes of one weight and one cache entry."""

    num_params: int
    whole_params: int  # parameters every GPU keeps whole under tensor parallelism (embeddings, norms)
    n_layers: int
    n_heads: int
    kv_heads: int
    head_dim: int
    vocab_size: int
    d_ff: int  # the MLP's hidden width
    weight_bytes: int = 2  # the server holds weights in its compute dtype: bfloat16 on GPU
    cache_bytes: int = 2  # the KV cache is in the compute dtype too

    @classmethod
    def from_table(cls, preset: str, dtype_bytes: int = 2) -> ServedModel:
        entry = table()["presets"][preset]
        fields = (
            "num_params",
            "whole_params",
            "n_layers",
            "n_heads",
            "kv_heads",
            "head_dim",
            "vocab_size",
            "d_ff",
        )
        return cls(**{f: entry[f] for f in fields}, weight_bytes=dtype_bytes, cache_bytes=dtype_bytes)

    def splits_over(self, shards: int) -> bool:
        """Whether `shards` GPUs each take whole heads (query and key/value): how tensor parallelism splits."""
        return self.n_heads % shards == 0 and self.kv_heads % shards == 0

    def slot_bytes(self, context: int, shards: int = 1) -> int:
        """One decode slot's keys and values for `context` positions, per GPU."""
        split = shards if self.kv_heads % shards == 0 else 1  # a cache whose heads do not divide stays whole
        return context * 2 * self.n_layers * self.kv_heads * self.head_dim * self.cache_bytes // split

    def prefill_bytes(self, rows: int, length: int, shards: int = 1) -> int:
        """One prefill call's temporaries per GPU: `rows` prompts padded to `length`."""
        logits = rows * self.vocab_size * 4  # the last prompt token's only
        split = shards if self.splits_over(shards) else 1
        heads = self.n_heads // split
        scores = PREFILL_SCORE_BUFFERS * rows * heads * length**2 * 4
        # One layer's per-token activations (f32, the safe side of bf16): the MLP's two hidden halves and the
        # projected heads (split), three residual-width buffers (whole on every GPU).
        width = 2 * self.d_ff // split + (self.n_heads + 2 * self.kv_heads) * self.head_dim // split
        activations = rows * length * 4 * (width + 3 * self.n_heads * self.head_dim)
        return logits + scores + activations

    def need(
        self,
        context: int,
        slots: int,
        shards: int = 1,
        prefill_rows: int = SERVING_PREFILL_ROWS,
        prefill_tokens: int = DEFAULT_PREFILL_TOKENS,
    ) -> ServingNeed:
        """Per-GPU bytes with `slots` decode slots of `context` tokens; the prefill term is the largest call
        the server makes (any padded length up to the context, at `prefill_rows_at` rows)."""
        split = self.num_params - self.whole_params
        weights = self.weight_bytes * (self.whole_params + split // shards)
        prefill = max(  # every padded length up to the context: 1, 2, 4, ..., context
            self.prefill_bytes(prefill_rows_at(length, prefill_rows, prefill_tokens), length, shards)
            for length in doubling(context)
        )
        return ServingNeed(weights, slots * self.slot_bytes(context, shards), prefill)


class DoesNotFit(ValueError):
    """Not even one decode slot fits beside the weights; the message names the bytes."""


@dataclasses.dataclass(frozen=True)
class ServingSplit:
    """How one server runs: the model over `shards` GPUs, `slots` decode slots, and what that takes per GPU."""

    shards: int
    slots: int
    need: ServingNeed
    usable: int  # bytes a GPU may use

    def describe(self) -> str:
        return f"{self.shards} GPU(s), {self.slots} decode slots: {self.need.describe()}, of {gib(self.usable)} usable"


def plan_serving(
    model: ServedModel,
    context: int,
    slots: int,
    devices: int,
    usable: int,
    tensor_parallel: int | None = None,
    prefill_rows: int = SERVING_PREFILL_ROWS,
    prefill_tokens: int = DEFAULT_PREFILL_TOKENS,
) -> ServingSplit:
    """The server's split: `tensor_parallel` GPUs when given, else the fewest of the `devices` (a divisor that
    splits whole heads) at which all `slots` fit in `usable` bytes per GPU, else all of them. The KV cache
    gets what the weights and the prefill's temporaries leave, up to `slots`; raises DoesNotFit below one slot."""
    if tensor_parallel is None:
        choices = [s for s in range(1, devices + 1) if devices % s == 0 and model.splits_over(s)]
        fitting = [
            s for s in choices if model.need(context, slots, s, prefill_rows, prefill_tokens).total <= usable
        ]
        shards = fitting[0] if fitting else choices[-1]
    else:
        shards = tensor_parallel
    fixed = model.need(context, 0, shards, prefill_rows, prefill_tokens).total
    fit = max(0, usable - fixed) // max(1, model.slot_bytes(context, shards))
    if fit < 1:
        raise DoesNotFit(
            f"{model.need(context, 1, shards, prefill_rows, prefill_tokens).describe()} with one decode slot of "
            f"{context} tokens over {shards} GPU(s), but each has {gib(usable)} usable: more GPUs, GPUs with more "
            "memory, or a shorter context"
        )
    chosen = min(slots, fit)
    return ServingSplit(
        shards, chosen, model.need(context, chosen, shards, prefill_rows, prefill_tokens), usable
    )
