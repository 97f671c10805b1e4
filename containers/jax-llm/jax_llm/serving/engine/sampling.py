"""Next-token choice for a batch of rows, each with its own settings: greedy, or temperature/top-k/top-p sampling.

Runs inside the jitted prefill and decode steps. Randomness is per request, not per batch: a row's key
is its request's seed folded with the index of the token being generated, so a seeded request gives
the same tokens whichever slot it lands in and whatever else is in the batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def seed_key_data(seed: int) -> np.ndarray:
    """The raw threefry key ([2] uint32) of a 64-bit seed; rows carry it as data, not as a key object."""
    return np.array([(seed >> 32) & 0xFFFFFFFF, seed & 0xFFFFFFFF], dtype=np.uint32)


# Bisection steps for the top-k and top-p thresholds: 32 halvings reach float32 resolution.
_BISECTION_STEPS = 32


def _largest_passing(passes, lo: jax.Array, hi: jax.Array) -> jax.Array:
    """Per row, the largest t in [lo, hi] with passes(t), for a test that is true at lo and monotone.

    Bisection instead of sorting the vocabulary: 32 masked reductions over [B, V] cost a fraction
    of a sort on CPU and stay cheap on GPU for a 32k vocabulary.
    """

    def halve(_, bounds):
        low, high = bounds
        mid = (low + high) / 2
        ok = passes(mid[:, None])  # [B]
        return jnp.where(ok, mid, low), jnp.where(ok, high, mid)

    return jax.lax.fori_loop(0, _BISECTION_STEPS, halve, (lo, hi))[0]


def _filter_top_k_top_p(scaled: jax.Array, top_k: jax.Array, top_p: jax.Array) -> jax.Array:
    """Masks to -inf every logit outside the row's top-k, then outside its top-p nucleus (HF/TGI order).

    scaled: [B, V] temperature-scaled logits; top_k: [B] (0 = off); top_p: [B] (1.0 = off).
    Ties at a threshold are all kept.
    """
    vocab = scaled.shape[-1]
    k = jnp.where(top_k > 0, jnp.minimum(top_k, vocab), vocab)  # [B]
    # The k-th largest logit is the largest t with at least k logits >= t. Each bisection runs only when
    # some row asks for its filter (a row with the filter off keeps everything either way).
    kth = jax.lax.cond(
        jnp.any(top_k > 0),
        lambda: _largest_passing(
            lambda t: jnp.sum(scaled >= t, axis=-1) >= k, scaled.min(-1), scaled.max(-1)
        ),
        lambda: jnp.full(scaled.shape[:1], -jnp.inf, scaled.dtype),
    )
    scaled = jnp.where(scaled >= kth[:, None], scaled, -jnp.inf)
    probs = jax.nn.softmax(scaled, axis=-1)

    # The nucleus is every token at least as likely as the least likely token of the smallest
    # most-likely-first set whose mass reaches top_p: the largest t whose tokens (p >= t) hold top_p.
    def mass_at_least(t):
        return jnp.sum(jnp.where(probs >= t, probs, 0.0), axis=-1) >= top_p

    smallest = jax.lax.cond(
        jnp.any(top_p < 1.0),
        lambda: _largest_passing(mass_at_least, jnp.zeros_like(top_p), probs.max(-1)),
        lambda: jnp.zeros_like(top_p),
    )
    return jnp.where(probs >= smallest[:, None], scaled, -jnp.inf)


def choose_tokens(
    logits: jax.Array,
    key_data: jax.Array,
    step: jax.Array,
    temperature: jax.Array,
    top_k: jax.Array,
    top_p: jax.Array,
    greedy: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """Picks one token per row. Returns (tokens [B] int32, logprobs [B] f32).

    logits: [B, V] f32; key_data: [B, 2] uint32; step: [B] index of the token being generated;
    temperature, top_p: [B] f32; top_k: [B] int32; greedy: [B] bool. The logprob is the token's
    log-probability under the model's own distribution (before temperature and filtering).
    """
    logprobs = jax.nn.log_softmax(logits, axis=-1)
    best = jnp.argmax(logits, axis=-1).astype(jnp.int32)

    def sampled(_: None) -> jax.Array:
        scaled = logits / temperature[:, None]
        needs_filter = jnp.any((top_k > 0) | (top_p < 1.0))
        # Sorting the vocabulary is the costly part: skip it when no row asks for top-k or top-p.
        scaled = jax.lax.cond(needs_filter, _filter_top_k_top_p, lambda s, *_: s, scaled, top_k, top_p)
        keys = jax.vmap(lambda data, i: jax.random.fold_in(jax.random.wrap_key_data(data), i))(key_data, step)
        # Inverse-CDF sampling: one uniform number per row instead of a Gumbel draw per vocabulary entry.
        cdf = jnp.cumsum(jax.nn.softmax(scaled, axis=-1), axis=-1)  # [B, V]
        u = jax.vmap(jax.random.uniform)(keys) * cdf[:, -1]  # [B], in [0, total mass)
        drawn = jnp.minimum(jnp.sum(cdf <= u[:, None], axis=-1), scaled.shape[-1] - 1).astype(jnp.int32)
        return jnp.where(greedy, best, drawn)

    tokens = jax.lax.cond(jnp.all(greedy), lambda _: best, sampled, None)
    return tokens, jnp.take_along_axis(logprobs, tokens[:, None], axis=-1)[:, 0]
