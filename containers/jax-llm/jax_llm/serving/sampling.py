"""Next-token choice for a batch of rows, each with its own settings: greedy, or temperature/top-k/top-p sampling.

Runs inside the jitted prefill and decode steps. Randomness is per request, not per batch: a row's key
is its request's seed folded with the index of the token being generated, so a seeded request gives
the same tokens whichever slot it lands in and whatever else is in the batch.
"""

from __future__ import annotations

import numpy as np
import jax
import jax.numpy as jnp


def seed_key_data(seed: int) -> np.ndarray:
    """The raw threefry key ([2] uint32) of a 64-bit seed; rows carry it as data, not as a key object."""
    return np.array([(seed >> 32) & 0xFFFFFFFF, seed & 0xFFFFFFFF], dtype=np.uint32)


def _filter_top_k_top_p(scaled: jax.Array, top_k: jax.Array, top_p: jax.Array) -> jax.Array:
    """Masks to -inf every logit outside the row's top-k, then outside its top-p nucleus (HF/TGI order).

    scaled: [B, V] temperature-scaled logits; top_k: [B] (0 = off); top_p: [B] (1.0 = off).
    """
    vocab = scaled.shape[-1]
    ordered = -jnp.sort(-scaled, axis=-1)  # [B, V] descending
    rank = jnp.arange(vocab)[None, :]
    k = jnp.where(top_k > 0, jnp.minimum(top_k, vocab), vocab)[:, None]  # [B, 1]
    in_top_k = rank < k
    probs = jax.nn.softmax(jnp.where(in_top_k, ordered, -jnp.inf), axis=-1)
    # Keep a token while the mass before it is below top_p: the smallest set reaching top_p (never empty).
    keep = in_top_k & ((jnp.cumsum(probs, axis=-1) - probs) < top_p[:, None])
    n_keep = jnp.sum(keep, axis=-1, keepdims=True)  # [B, 1], >= 1
    threshold = jnp.take_along_axis(ordered, n_keep - 1, axis=-1)  # [B, 1] smallest kept logit
    return jnp.where(scaled >= threshold, scaled, -jnp.inf)


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
        drawn = jax.vmap(jax.random.categorical)(keys, scaled).astype(jnp.int32)
        return jnp.where(greedy, best, drawn)

    tokens = jax.lax.cond(jnp.all(greedy), lambda _: best, sampled, None)
    return tokens, jnp.take_along_axis(logprobs, tokens[:, None], axis=-1)[:, 0]
