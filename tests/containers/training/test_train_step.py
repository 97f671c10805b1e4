"""The train step on a 2-device CPU mesh: FSDP + gradient accumulation gives plain data parallel's results."""

import json
import os
import subprocess
import sys

from tests.support import CONTAINER_SRC

# Runs in a child process: the device count is fixed when JAX starts.
SCRIPT = r"""
import json, numpy as np, jax
from jax_llm.training import sharding
from jax_llm.contract.hyperparameters import TrainConfig
from jax_llm.model.config import ModelConfig
from jax_llm.training.optimizer import make_optimizer
from jax_llm.training.train_step import create_train_state, make_train_step

model_config = ModelConfig.preset("tiny", max_seq_len=16)
batch = np.random.default_rng(0).integers(0, model_config.vocab_size, (8, 17)).astype(np.int32)
mesh = sharding.make_mesh()
batch_sharding = sharding.batch_sharding(mesh)
results = {}
for fsdp, accum in [(False, 1), (True, 2)]:  # two compiles: each costs seconds on a small CPU
    config = TrainConfig(preset="tiny", max_steps=10, warmup_steps=1, batch_size=8, grad_accum_steps=accum)
    state = create_train_state(model_config, make_optimizer(config), 0, mesh, fsdp)
    step = make_train_step(state, accum, batch_sharding)
    losses = []
    for _ in range(3):
        state.state, loss = step(state.state, sharding.global_batch(batch, batch_sharding, 8))
        losses.append(float(loss))
    embed = state.state[0]["embed"]["embedding"].value
    results[f"{fsdp}-{accum}"] = {"losses": losses, "spec": str(embed.sharding.spec),
                                  "embed": np.asarray(embed).ravel()[:64].tolist()}
print(json.dumps({"devices": jax.device_count(), "results": results}))
"""


def test_fsdp_and_accumulation_reproduce_plain_data_parallel():
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "PYTHONPATH": str(CONTAINER_SRC)}
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["devices"] == 2
    runs = report["results"]
    base = runs["False-1"]
    assert base["losses"][2] < base["losses"][0]  # it trains
    assert runs["True-2"]["spec"] == "P('data', None)"  # embedding [vocab, d] split over the devices
    assert base["spec"] == "P()"
    for name, run in runs.items():
        for a, b in zip(run["losses"], base["losses"]):
            assert abs(a - b) < 1e-5, (name, run["losses"], base["losses"])
        assert max(abs(a - b) for a, b in zip(run["embed"], base["embed"])) < 1e-5, name
