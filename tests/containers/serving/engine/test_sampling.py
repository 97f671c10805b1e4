"""Per-row token choice: greedy, temperature, top-k, top-p, and per-request seeded randomness."""

from __future__ import annotations

import jax
import numpy as np

from jax_llm.serving.engine.sampling import choose_tokens, seed_key_data

VOCAB = 32
choose = jax.jit(choose_tokens)


def rows(n, temperature=1.0, top_k=0, top_p=1.0, greedy=False, seed=0, step=0):
    return (
        np.stack([seed_key_data(seed)] * n),
        np.full(n, step, np.int32),
        np.full(n, temperature, np.float32),
        np.full(n, top_k, np.int32),
        np.full(n, top_p, np.float32),
        np.full(n, greedy),
    )


def logits(n=1, seed=0):
    return np.random.default_rng(seed).normal(size=(n, VOCAB)).astype(np.float32) * 3


def test_greedy_and_one_token_filters_pick_the_argmax():
    x = logits(4)
    for settings in ({"greedy": True}, {"top_k": 1}, {"top_p": 1e-6}):
        tokens, logprobs = choose(x, *rows(4, **settings))
        np.testing.assert_array_equal(tokens, x.argmax(-1))
        np.testing.assert_allclose(logprobs, jax.nn.log_softmax(x)[np.arange(4), tokens], rtol=1e-6)


def test_top_k_and_top_p_sample_only_inside_their_sets():
    x = logits(1)
    order = np.argsort(-x[0])
    probs = np.asarray(jax.nn.softmax(x[0]))
    nucleus = order[: np.searchsorted(np.cumsum(probs[order]), 0.8) + 1]
    seen_k, seen_p = set(), set()
    for seed in range(200):
        seen_k.add(int(choose(x, *rows(1, top_k=3, seed=seed))[0][0]))
        seen_p.add(int(choose(x, *rows(1, top_p=0.8, seed=seed))[0][0]))
    assert seen_k == set(order[:3].tolist())
    assert seen_p <= set(nucleus.tolist()) and len(seen_p) > 1


def test_a_seed_gives_the_same_tokens_in_any_row_and_batch():
    x = np.repeat(logits(1), 5, axis=0)
    batch = rows(5, temperature=2.0, seed=7)
    alone = choose(x[:1], *rows(1, temperature=2.0, seed=7))[0]
    tokens = choose(x, *batch)[0]
    assert (tokens == alone[0]).all()
    draws = {int(choose(x[:1], *rows(1, temperature=2.0, seed=7, step=s))[0][0]) for s in range(20)}
    assert len(draws) > 1  # each generated position draws afresh


def test_temperature_sharpens_and_flattens():
    x = (np.arange(VOCAB, dtype=np.float32) * 0.5)[None, :]  # neighbours 0.5 apart

    def spread(temperature):
        return len({int(choose(x, *rows(1, temperature=temperature, seed=s))[0][0]) for s in range(100)})

    assert spread(0.05) == 1
    assert spread(5.0) > spread(1.0) > 1


def test_samples_follow_the_softmax_distribution():
    n = 20000
    x = np.repeat(logits(1, seed=3) / 3, n, axis=0)
    key_data = np.stack([seed_key_data(s) for s in range(n)])
    _, step, temperature, top_k, top_p, greedy = rows(n)
    tokens = np.asarray(choose(x, key_data, step, temperature, top_k, top_p, greedy)[0])
    frequency = np.bincount(tokens, minlength=VOCAB) / n
    total_variation = 0.5 * np.abs(frequency - np.asarray(jax.nn.softmax(x[0]))).sum()
    assert total_variation < 0.03
