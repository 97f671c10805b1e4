"""The GPT: causal training forward, the KV-cache decode path serving uses, remat, parameter count."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jax_llm.model.config import ModelConfig
from jax_llm.model.gpt import GPT, init_cache

CONFIG = ModelConfig.preset("tiny")


@nnx.jit
def forward(model: GPT, tokens, positions=None, cache=None):
    """One compiled forward per shape: eager op-by-op dispatch would dominate these tests' time."""
    return model(tokens, positions, cache)


@pytest.fixture(scope="module")
def model() -> GPT:
    return GPT(CONFIG, rngs=nnx.Rngs(0))


def _tokens(batch: int, length: int, seed: int = 1) -> jax.Array:
    return jax.random.randint(jax.random.key(seed), (batch, length), 0, CONFIG.vocab_size)


def test_parameter_count_matches_the_formula(model):
    params = nnx.state(model, nnx.Param)
    assert sum(x.size for x in jax.tree.leaves(params)) == CONFIG.num_params()


def test_forward_is_causal(model):
    tokens = _tokens(1, 12)
    changed = tokens.at[0, 8].set((tokens[0, 8] + 1) % CONFIG.vocab_size)
    logits, _ = forward(model, tokens)
    logits_changed, _ = forward(model, changed)
    np.testing.assert_array_equal(logits[0, :8], logits_changed[0, :8])  # the past cannot see the future
    assert not np.allclose(logits[0, 8:], logits_changed[0, 8:])


def test_prefill_then_decode_matches_full_forward(model):
    tokens = _tokens(2, 10)
    full, _ = forward(model, tokens)
    cache = init_cache(CONFIG, batch=2, max_len=16)
    prefix = jnp.broadcast_to(jnp.arange(6), (2, 6))
    logits, cache = forward(model, tokens[:, :6], prefix, cache)
    steps = [logits]
    for t in range(6, 10):
        logits, cache = forward(model, tokens[:, t : t + 1], jnp.full((2, 1), t), cache)
        steps.append(logits)
    np.testing.assert_allclose(jnp.concatenate(steps, axis=1), full, atol=1e-5)


def test_rows_of_one_batch_decode_at_different_positions(model):
    """Continuous batching: row 0 is 3 tokens into its request, row 1 is 7 tokens into another."""
    a, b = _tokens(1, 4, seed=2), _tokens(1, 8, seed=3)
    cache = init_cache(CONFIG, batch=2, max_len=16)
    # Stale values from an earlier, longer request in row 0 must stay invisible.
    _, cache = forward(model, _tokens(2, 12, seed=4), jnp.broadcast_to(jnp.arange(12), (2, 12)), cache)
    padded_a = jnp.pad(a[:, :3], ((0, 0), (0, 4)))
    _, cache = forward(
        model, jnp.concatenate([padded_a, b[:, :7]]), jnp.broadcast_to(jnp.arange(7), (2, 7)), cache
    )
    step, _ = forward(model, jnp.concatenate([a[:, 3:4], b[:, 7:8]]), jnp.array([[3], [7]]), cache)
    np.testing.assert_allclose(step[0, 0], forward(model, a)[0][0, 3], atol=1e-5)
    np.testing.assert_allclose(step[1, 0], forward(model, b)[0][0, 7], atol=1e-5)


def test_decode_bounded_to_the_live_positions_matches_the_whole_cache(model):
    """kv_len: a decode step that attends over only the first positions a row can see changes nothing."""
    cache = init_cache(CONFIG, batch=2, max_len=64)
    # Row 0 holds 20 positions, row 1 only 5; stale values of a longer earlier request lie past both.
    _, cache = forward(model, _tokens(2, 40, seed=5), jnp.broadcast_to(jnp.arange(40), (2, 40)), cache)
    _, cache = forward(model, _tokens(2, 20, seed=6), jnp.broadcast_to(jnp.arange(20), (2, 20)), cache)
    step_tokens, positions = _tokens(2, 1, seed=7), jnp.array([[20], [5]])
    whole, whole_cache = forward(model, step_tokens, positions, cache)
    bounded, bounded_cache = nnx.jit(lambda m, t, p, c: m(t, p, c, kv_len=32))(
        model, step_tokens, positions, cache
    )
    np.testing.assert_allclose(bounded, whole, atol=1e-6)
    for got, want in zip(jax.tree.leaves(bounded_cache), jax.tree.leaves(whole_cache)):
        np.testing.assert_array_equal(got, want)  # the step's keys/values are written either way


def test_remat_changes_memory_not_gradients(model):
    remat_model = GPT(dataclasses.replace(CONFIG, remat=True), rngs=nnx.Rngs(0))
    tokens = _tokens(2, 8)

    def loss(m):
        return m(tokens)[0].mean()

    grad = nnx.jit(nnx.grad(loss))
    grads, remat_grads = grad(model), grad(remat_model)
    for g, r in zip(jax.tree.leaves(grads), jax.tree.leaves(remat_grads)):
        np.testing.assert_allclose(g, r, atol=1e-7)


def test_bfloat16_compute_keeps_float32_master_weights():
    model = GPT(dataclasses.replace(CONFIG, compute_dtype="bfloat16"), rngs=nnx.Rngs(0))
    assert {x.dtype for x in jax.tree.leaves(nnx.state(model, nnx.Param))} == {jnp.dtype("float32")}
    logits, _ = forward(model, _tokens(1, 4))
    assert logits.dtype == jnp.float32 and bool(jnp.isfinite(logits).all())
