"""The learning-rate schedule and which parameters AdamW decays."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jax_llm.contract.hyperparameters import TrainConfig
from jax_llm.training.optimizer import learning_rate_schedule, make_optimizer


def test_warmup_then_cosine_to_the_floor():
    config = TrainConfig(max_steps=100, warmup_steps=10, learning_rate=1e-3, min_lr_ratio=0.1)
    schedule = learning_rate_schedule(config)
    assert float(schedule(0)) == 0.0
    assert float(schedule(5)) == pytest.approx(5e-4)
    assert float(schedule(10)) == pytest.approx(1e-3)
    assert float(schedule(55)) == pytest.approx(1e-4 + 0.5 * 9e-4, rel=1e-5)  # half-way down the cosine
    assert float(schedule(100)) == pytest.approx(1e-4)


def test_weight_decay_shrinks_matrices_but_not_norm_scales():
    config = TrainConfig(max_steps=10, warmup_steps=0, learning_rate=0.1, weight_decay=0.5, grad_clip=0.0)
    params = {"kernel": jnp.ones((2, 2)), "scale": jnp.ones((2,))}
    tx = make_optimizer(config)
    zero_grads = {"kernel": jnp.zeros((2, 2)), "scale": jnp.zeros((2,))}
    updates, _ = tx.update(zero_grads, tx.init(params), params)
    new = optax.apply_updates(params, updates)
    assert np.allclose(new["kernel"], 1 - 0.1 * 0.5) and np.allclose(new["scale"], 1.0)


def test_stacked_norm_scales_of_a_scanned_model_are_not_decayed():
    """A scanned model's norm scales are [n_layers, d]: matrices by rank, still not decayed."""
    from flax import nnx

    from jax_llm.model.config import ModelConfig
    from jax_llm.model.gpt import GPT

    config = TrainConfig(max_steps=10, warmup_steps=0, learning_rate=0.1, weight_decay=0.5, grad_clip=0.0)
    model = GPT(ModelConfig.preset("tiny-llama"), rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, make_optimizer(config), wrt=nnx.Param)
    before = nnx.to_flat_state(nnx.clone(nnx.state(model, nnx.Param)))
    optimizer.update(model, jax.tree.map(jnp.zeros_like, nnx.state(model, nnx.Param)))
    after = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
    for path, old in before:
        name = ".".join(map(str, path))
        shrunk = np.allclose(after[path].get_value(), old.get_value() * (1 - 0.1 * 0.5), atol=1e-7)
        assert shrunk == (path[-1] != "scale"), name
    assert after[("layers", "attn_norm", "scale")].get_value().ndim == 2
