"""The trainer end to end on the scanned Llama-shaped tiny model over a 2 x 2 (data x fsdp) mesh of 4 CPU
devices: it trains, checkpoints, resumes from its checkpoint and exports a model that serving loads."""

import json
import subprocess
import sys

import numpy as np
from flax import nnx

from jax_llm.model.export import load_model
from tests.support import TINY_HYPERPARAMETERS, train_command_env, write_training_tree


def _train(root, **overrides) -> str:
    (root / "input" / "config" / "hyperparameters.json").write_text(
        json.dumps(
            {
                **TINY_HYPERPARAMETERS,
                "preset": '"tiny-llama"',
                "mesh": '"2x2"',
                "fsdp": "true",
                "batch_size": "8",
                "seq_len": "32",
                "eval_every": "0",
                "log_every": "2",
                **overrides,
            }
        )
    )
    env = train_command_env(root, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    out = subprocess.run(
        [sys.executable, "-m", "jax_llm", "train"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=root,
    )
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    return out.stdout


def test_tiny_llama_trains_on_a_2x2_mesh_resumes_and_exports(tmp_path):
    root = write_training_tree(tmp_path / "opt-ml", {})
    first = _train(root, max_steps="6", checkpoint_every="6")
    assert "as a data x fsdp mesh of {'data': 2, 'fsdp': 2}" in first
    second = _train(root, max_steps="10", checkpoint_every="6")
    assert "restored checkpoint 6" in second
    model = load_model(root / "model")
    assert model.config.scan_layers and model.config.kv_heads == 2 and not model.config.tie_embeddings
    params = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
    assert params[("layers", "attn", "qkv", "kernel")].get_value().shape == (
        3,
        64,
        128,
    )  # [layers, d, (4+2+2) x 16]
    logits, _ = model(np.arange(10, dtype=np.int32)[None])
    assert logits.shape == (1, 10, model.config.vocab_size) and np.isfinite(logits).all()
    losses = json.loads((root / "model" / "metrics.json").read_text())
    assert losses["steps"] == 10
