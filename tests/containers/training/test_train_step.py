"""The train step on 8 CPU devices: flat FSDP with accumulation, and a 2 x 4 hybrid (data x fsdp) mesh,
give plain data parallel's losses and weights, on the scanned Llama-shaped tiny model."""

from tests.support import run_on_cpu_devices

# Runs in a child process: the device count is fixed when JAX starts.
SCRIPT = r"""
import json, numpy as np, jax
from jax_llm.training import sharding
from jax_llm.contract.hyperparameters import TrainConfig
from jax_llm.model.config import ModelConfig
from jax_llm.training.optimizer import make_optimizer
from jax_llm.training.train_step import create_train_state, make_train_step

model_config = ModelConfig.preset("tiny-llama", max_seq_len=16)
batch = np.random.default_rng(0).integers(0, model_config.vocab_size, (16, 17)).astype(np.int32)
results = {}
# (mesh, fsdp, accum): the 1-D data-parallel baseline; flat FSDP over all 8 with 2 micro-batches; hybrid.
for shape, fsdp, accum in [((1, 8), False, 1), ((1, 8), True, 2), ((2, 4), True, 1)]:
    mesh = sharding.make_mesh(shape)
    batch_sharding = sharding.batch_sharding(mesh)
    config = TrainConfig(preset="tiny-llama", max_steps=10, warmup_steps=1, batch_size=16, grad_accum_steps=accum)
    state = create_train_state(model_config, make_optimizer(config), 0, mesh, fsdp)
    step = make_train_step(state, accum, batch_sharding)
    losses = []
    for _ in range(3):
        state.state, loss = step(state.state, sharding.global_batch(batch, batch_sharding, 16))
        losses.append(float(loss))
    params = state.state[0]
    embed, qkv = params["embed"]["embedding"].value, params["layers"]["attn"]["qkv"]["kernel"].value
    mu = state.state[1]["opt_state"][1][0].mu["layers"]["attn"]["qkv"]["kernel"].value  # AdamW's first moment
    results[f"{shape[0]}x{shape[1]}-{fsdp}-{accum}"] = {
        "losses": losses, "embed_spec": str(embed.sharding.spec), "qkv_spec": str(qkv.sharding.spec),
        "mu_spec": str(mu.sharding.spec), "qkv_shard": list(qkv.addressable_shards[0].data.shape),
        "embed": np.asarray(embed).ravel()[:64].tolist(), "qkv": np.asarray(qkv).ravel()[:64].tolist()}
print(json.dumps({"devices": jax.device_count(), "results": results}))
"""


def test_fsdp_hybrid_mesh_and_accumulation_reproduce_plain_data_parallel():
    report = run_on_cpu_devices(SCRIPT, 8)
    assert report["devices"] == 8
    runs = report["results"]
    base, flat, hybrid = runs["1x8-False-1"], runs["1x8-True-2"], runs["2x4-True-1"]
    assert base["losses"][2] < base["losses"][0]  # it trains
    assert base["embed_spec"] == base["qkv_spec"] == "P()"  # data parallel: whole copies
    # Embedding [vocab, d]: vocab over fsdp. Stacked qkv [layers 3, d 64, 128]: never the layer axis.
    assert flat["embed_spec"] == hybrid["embed_spec"] == "P('fsdp', None)"
    assert flat["qkv_spec"] == hybrid["qkv_spec"] == hybrid["mu_spec"] == "P(None, None, 'fsdp')"
    assert flat["qkv_shard"] == [3, 64, 16] and hybrid["qkv_shard"] == [3, 64, 32]  # 1/8 and 1/4 per device
    for name, run in runs.items():
        for a, b in zip(run["losses"], base["losses"]):
            assert abs(a - b) < 1e-5, (name, run["losses"], base["losses"])
        for key in ("embed", "qkv"):
            assert max(abs(a - b) for a, b in zip(run[key], base[key])) < 1e-5, (name, key)
