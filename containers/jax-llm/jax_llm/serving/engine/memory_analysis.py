"""XLA's own memory analysis of the server's programs, for any model size, with nothing allocated.

The runner's prefill and decode programs (`runner.programs`) are lowered from `jax.ShapeDtypeStruct`s that
carry the shardings the server gives its weights and KV cache (`tensor_parallel`), and compiled; per device,
`compiled.memory_analysis()` gives the argument bytes (the weights and the cache) and the temporaries of the
largest prefill (the longest prompt bucket at the full prefill batch) and of the widest decode step. On a
CPU with as many host devices as the split needs, this is how `python -m jax_llm plan` checks the serving
arithmetic of `contract/memory_plan.py` against XLA, and how a test proves that arithmetic exact.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding

from jax_llm.model.config import ModelConfig
from jax_llm.model.gpt import GPT, init_cache
from jax_llm.serving.engine import tensor_parallel
from jax_llm.serving.engine.runner import SlotParams, programs


@dataclasses.dataclass(frozen=True)
class ProgramMemory:
    """Per-device bytes of one compiled program, as XLA counts them."""

    arguments: int  # weights, cache and the step's small inputs
    temporaries: int
    outputs: int
    aliased: int  # outputs written over donated arguments (the cache, the latest tokens)

    @property
    def peak(self) -> int:
        return self.arguments + self.outputs - self.aliased + self.temporaries


def _abstract(tree, shardings):
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


def analyze(config: ModelConfig, slots: int, prefill_rows: int, shards: int) -> dict[str, ProgramMemory]:
    """{"prefill", "decode"}: XLA's per-device memory of the server's programs for `config` (its dtypes and
    context as served) with `slots` decode slots, prefilling `prefill_rows` prompts of the whole context at
    once, split over the first `shards` local devices (1: unsplit)."""
    mesh = tensor_parallel.make_mesh(shards)
    graphdef, state = nnx.split(nnx.eval_shape(lambda: GPT(config, rngs=nnx.Rngs(0))))
    params = _abstract(
        state,
        jax.tree_util.tree_map_with_path(
            lambda path, x: NamedSharding(
                mesh, tensor_parallel.weight_spec(tensor_parallel.dotted(path), x.shape, shards)
            ),
            state,
        ),
    )
    cache = jax.eval_shape(lambda: init_cache(config, slots))
    cache = _abstract(
        cache, jax.tree.map(lambda _: tensor_parallel.cache_sharding(mesh, config.kv_heads), cache)
    )
    whole = tensor_parallel.replicated(mesh)

    def small(*arrays: np.ndarray):
        return tuple(jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=whole) for a in arrays)

    (last,) = small(np.zeros(slots, np.int32))
    prefill, decode = programs(graphdef, config, config.vocab_size, mesh if shards > 1 else None)
    rows, length = prefill_rows, config.max_seq_len
    found = {}
    for name, lowered in (
        (
            "prefill",
            prefill.lower(
                params,
                cache,
                last,
                *small(
                    np.zeros(rows, np.int32), np.zeros((rows, length), np.int32), np.zeros(rows, np.int32)
                ),
                *small(*SlotParams(rows).first(rows)),
            ),
        ),
        (
            "decode",
            decode.lower(
                params,
                cache,
                last,
                *small(np.zeros(slots, np.int32), np.zeros(slots, np.int32)),
                *small(*SlotParams(slots).first(slots)),
                kv_len=length,
            ),
        ),
    ):
        stats = lowered.compile().memory_analysis()
        found[name] = ProgramMemory(
            stats.argument_size_in_bytes,
            stats.temp_size_in_bytes,
            stats.output_size_in_bytes,
            stats.alias_size_in_bytes,
        )
    return found
