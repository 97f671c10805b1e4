"""The serving memory plan against XLA: the server's own prefill and decode programs, compiled from abstract
arrays split as the server splits them (`memory_analysis.analyze`), hold per device exactly the weights and
KV cache the plan counts, and no more temporaries than the plan allows for the largest prefill.

In float32: XLA's CPU compiler turns a bfloat16 cache into float32 copies before every attention (the CPU
has no bfloat16 matmul), temporaries a GPU never makes; in float32 the CPU's program is the GPU's."""

from __future__ import annotations

import json

import pytest

from tests.support import run_on_cpu_devices

# In a process of its own with 4 CPU devices.
ANALYZE = """
import json, sys
from jax_llm.model.config import ModelConfig
from jax_llm.serving.engine.memory_analysis import analyze
from jax_llm.serving.engine.tensor_parallel import served_model

out = []
for preset, shards, slots, context, rows in json.loads(sys.argv[1]):
    config = ModelConfig.preset(preset, max_seq_len=context, qkv_groups=shards)
    found = analyze(config, slots, rows, shards)
    need = served_model(config).need(context, slots, shards, rows, prefill_tokens=rows * context)
    out.append({"case": [preset, shards, slots, context, rows], "weights": need.weights, "kv_cache": need.kv_cache,
                "planned_prefill": need.prefill, **{k: v.__dict__ for k, v in found.items()}})
print(json.dumps(out))
"""
CASES = [  # preset, shards, slots, context, prefill rows
    ("tiny", 1, 8, 256, 1),
    ("tiny", 2, 8, 256, 2),
    ("tiny-llama", 1, 32, 1024, 1),
    ("tiny-llama", 2, 16, 512, 4),
]


@pytest.fixture(scope="module")
def analyses() -> list[dict]:
    return run_on_cpu_devices(ANALYZE, 4, json.dumps(CASES))


def test_every_device_holds_exactly_the_weights_and_cache_the_plan_counts(analyses):
    for found in analyses:
        for program in ("prefill", "decode"):
            inputs = found[program]["arguments"] - found["weights"] - found["kv_cache"]
            assert 0 <= inputs <= 16 * 1024, (found["case"], program, inputs)  # tokens, positions, sampling


def test_no_program_needs_more_temporaries_than_the_plan_allows_for_the_largest_prefill(analyses):
    for found in analyses:
        prefill, decode = found["prefill"]["temporaries"], found["decode"]["temporaries"]
        assert prefill <= found["planned_prefill"] and decode <= found["planned_prefill"], found
        assert prefill >= 0.5 * found["planned_prefill"], found  # and the plan is not far on the safe side
