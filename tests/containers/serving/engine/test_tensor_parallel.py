"""Tensor-parallel serving: which dimension of each weight is split; that the split program communicates as
Megatron's does (one all-reduce per attention and per MLP, nothing else); and a server that does not fit one
device of its memory splits the model over several by itself, gives the KV cache what is left, and answers
greedy requests token for token like the unsharded session server."""

from __future__ import annotations

import httpx
import pytest
from jax.sharding import PartitionSpec as P
from prometheus_client.parser import text_string_to_metric_families

from jax_llm.model.export import read_model_config
from jax_llm.serving.engine.tensor_parallel import MODEL_AXIS, served_model, weight_spec
from tests.containers.serving.support import SLOTS, ping_until, running_server, start_server
from tests.support import run_on_cpu_devices

PROMPTS = ["def main(", "import os\n", "class Parser:\n    def __init__(self", "    return "]


@pytest.mark.parametrize(
    ("name", "shape", "spec"),
    [
        ("blocks.0.attn.qkv.kernel", (64, 192), P(None, MODEL_AXIS)),  # fan out: heads' columns
        ("blocks.0.mlp_in.kernel", (64, 256), P(None, MODEL_AXIS)),
        ("blocks.0.attn.out.kernel", (64, 64), P(MODEL_AXIS, None)),  # fan in: the heads' rows
        ("blocks.0.mlp_out.kernel", (256, 64), P(MODEL_AXIS, None)),
        ("layers.mlp_gate.kernel", (3, 64, 192), P(None, None, MODEL_AXIS)),  # scanned: [layers, in, out]
        ("layers.mlp_up.kernel", (3, 64, 192), P(None, None, MODEL_AXIS)),
        ("layers.mlp_out.kernel", (3, 192, 64), P(None, MODEL_AXIS, None)),
        ("embed.embedding", (512, 64), P()),
        ("lm_head.kernel", (64, 512), P()),
        ("final_norm.scale", (64,), P()),
        ("blocks.0.mlp_in.kernel", (64, 250), P()),  # 250 does not split over 4: stays whole
    ],
)
def test_which_dimension_of_each_weight_is_split(name, shape, spec):
    assert weight_spec(name, shape, 4) == spec


# In a process of its own with 4 CPU devices: the decode program of a GPT (2 layers) and a Llama (3 layers;
# with a KV cache its layers run as a Python loop, scanned weights or not) split 2 ways, loaded as the server
# loads them, with the fused q/k/v columns grouped per device and not.
COLLECTIVES = """
import json, sys, tempfile
from pathlib import Path
import numpy as np
from flax import nnx
from jax_llm.model.config import ModelConfig
from jax_llm.model.export import load_model, save_model
from jax_llm.model.gpt import GPT
from jax_llm.serving.engine import tensor_parallel
from jax_llm.serving.engine.runner import ModelRunner, SlotParams

OPS = ("all-reduce", "all-gather", "all-to-all", "collective-permute", "reduce-scatter")
out = {}
with tempfile.TemporaryDirectory() as tmp:
    tokenizer = Path(tmp) / "tokenizer.json"
    tokenizer.write_text("{}")
    for preset in ("tiny", "tiny-llama"):
        config = ModelConfig.preset(preset)
        save_model(Path(tmp) / preset, GPT(config, rngs=nnx.Rngs(0)), tokenizer)
        for groups in (1, 2):
            mesh = tensor_parallel.make_mesh(2)
            model = load_model(Path(tmp) / preset, place=tensor_parallel.placer(mesh), qkv_groups=groups)
            runner = ModelRunner(model, 4, [16, config.max_seq_len], 1, mesh=mesh)
            idle, zeros = np.full(4, runner.idle_position, np.int32), np.zeros(4, np.int32)
            args = (runner.params, runner._cache, runner._last, idle, zeros, *SlotParams(4).first(4))
            hlo = runner._decode.lower(*args, kv_len=16).compile().as_text()
            out[f"{preset} {groups}"] = {op: hlo.count(f" {op}(") + hlo.count(f" {op}-start(") for op in OPS}
print(json.dumps(out))
"""


def test_a_split_decode_step_communicates_one_all_reduce_per_attention_and_per_mlp():
    counts = run_on_cpu_devices(COLLECTIVES, 4)
    nothing_else = {"all-gather": 0, "all-to-all": 0, "collective-permute": 0, "reduce-scatter": 0}
    assert counts["tiny 2"] == {"all-reduce": 2 * 2, **nothing_else}  # 2 layers, each attention and MLP
    assert counts["tiny-llama 2"] == {"all-reduce": 2 * 3, **nothing_else}
    # Split evenly without the grouping, the fused projection's columns cross heads: XLA moves data between
    # the devices in every layer to line the heads up again.
    assert counts["tiny 1"]["collective-permute"] > 0 and counts["tiny-llama 1"]["collective-permute"] > 0


def _greedy(url: str, prompt: str) -> list[int]:
    payload = {"inputs": prompt, "parameters": {"max_new_tokens": 24, "details": True}}
    response = httpx.post(f"{url}/invocations", json=payload, timeout=120)
    assert response.status_code == 200, response.text
    return [token["id"] for token in response.json()[0]["details"]["tokens"]]


def _gauges(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {
        f.name: f.samples[0].value
        for f in text_string_to_metric_families(text)
        if f.type == "gauge" and f.samples
    }


def test_a_model_too_big_for_one_device_is_split_by_itself_and_gets_the_slots_that_fit(
    server, tiny_training_run, tmp_path, compile_cache
):
    expected = [_greedy(server.url, prompt) for prompt in PROMPTS]
    # Devices of a size that hold the model only split 4 ways, and then one slot fewer than asked for:
    # the server works out both from the model's sizes, as on a GPU from XLA's memory limit.
    config = read_model_config(tiny_training_run.root / "model")
    model, context = served_model(config), config.max_seq_len
    memory = model.need(context, SLOTS - 1, 4, prefill_rows=1).total + model.slot_bytes(context, 4) // 2
    assert model.need(context, SLOTS, 2, prefill_rows=1).total > memory  # 2 devices would not do
    env = {
        "JAX_LLM_DEVICE_MEMORY_BYTES": str(memory),
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
    }
    with running_server(tiny_training_run.root, tmp_path / "serve.log", compile_cache, **env) as split:
        got = [_greedy(split.url, prompt) for prompt in PROMPTS]
        gauges = _gauges(split.url)
        log = split.log()
    assert gauges["jax_llm_tensor_parallel"] == 4 and gauges["jax_llm_slots"] == SLOTS - 1
    assert f"{SLOTS - 1} of the {SLOTS} decode slots asked for (JAX_LLM_MAX_BATCH) fit" in log
    said = log.split("tensor parallel over 4 devices: ")[1].split(" weight bytes split")[0]
    split_bytes, total = (int(x) for x in said.split(" of "))
    assert split_bytes > total / 2  # the matrices of every block, not only a token gesture
    assert got == expected and all(expected)


def test_devices_too_small_for_one_slot_fail_the_start_naming_the_bytes(
    tiny_training_run, tmp_path, compile_cache
):
    process, url = start_server(
        tiny_training_run.root, tmp_path / "serve.log", compile_cache, JAX_LLM_DEVICE_MEMORY_BYTES="100000"
    )
    try:
        ping_until(process, url, tmp_path / "serve.log", lambda r: r.status_code != 503)
        failed = httpx.get(f"{url}/ping", timeout=2)
        assert failed.status_code == 500 and failed.json()["error_type"] == "load_failed"
        said = failed.json()["error"]
        assert "with one decode slot" in said and "but each has 0.0 GiB usable" in said and "weights " in said
    finally:
        process.kill()
        process.wait()
