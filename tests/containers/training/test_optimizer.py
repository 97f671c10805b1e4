"""The learning-rate schedule and which parameters AdamW decays."""

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
