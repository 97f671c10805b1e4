"""Tensor-parallel serving: the tiny model split over 4 CPU devices answers greedy requests token for token
like the unsharded session server (a second real server, with JAX_LLM_TENSOR_PARALLEL=4)."""

from __future__ import annotations

import httpx
import pytest
from jax.sharding import PartitionSpec as P

from jax_llm.serving.engine.tensor_parallel import MODEL_AXIS, weight_spec
from tests.containers.serving.conftest import running_server

PROMPTS = ["def main(", "import os\n", "class Parser:\n    def __init__(self", "    return "]


@pytest.mark.parametrize(
    ("name", "shape", "spec"),
    [
        ("blocks.0.attn.qkv.kernel", (64, 192), P(None, MODEL_AXIS)),  # fan out: heads' columns
        ("blocks.0.mlp_in.kernel", (64, 256), P(None, MODEL_AXIS)),
        ("blocks.0.attn.out.kernel", (64, 64), P(MODEL_AXIS, None)),  # fan in: the heads' rows
        ("blocks.0.mlp_out.kernel", (256, 64), P(MODEL_AXIS, None)),
        ("layers.mlp_out.kernel", (3, 192, 64), P(None, MODEL_AXIS, None)),  # scanned: [layers, in, out]
        ("embed.embedding", (512, 64), P()),
        ("final_norm.scale", (64,), P()),
        ("blocks.0.mlp_in.kernel", (64, 250), P()),  # 250 does not split over 4: stays whole
    ],
)
def test_which_dimension_of_each_weight_is_split(name, shape, spec):
    assert weight_spec(name, shape, 4) == spec


def _greedy(url: str, prompt: str) -> list[int]:
    payload = {"inputs": prompt, "parameters": {"max_new_tokens": 24, "details": True}}
    response = httpx.post(f"{url}/invocations", json=payload, timeout=120)
    assert response.status_code == 200, response.text
    return [token["id"] for token in response.json()[0]["details"]["tokens"]]


def test_four_devices_answer_greedy_requests_token_for_token_like_one(
    server, tiny_training_run, tmp_path, compile_cache
):
    expected = [_greedy(server.url, prompt) for prompt in PROMPTS]
    env = {"JAX_LLM_TENSOR_PARALLEL": "4", "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    with running_server(tiny_training_run.root, tmp_path / "serve.log", compile_cache, **env) as split:
        got = [_greedy(split.url, prompt) for prompt in PROMPTS]
        log = split.log()
    assert "tensor parallel over 4 devices: " in log
    said = log.split("tensor parallel over 4 devices: ")[1].split(" weight bytes split")[0]
    split_bytes, total = (int(x) for x in said.split(" of "))
    assert split_bytes > total / 2  # the matrices of every block, not only a token gesture
    assert got == expected and all(expected)
