"""The model on the accelerator: a KV cache of fixed slots, a compiled prefill per prompt bucket, decode steps.

Shapes never depend on traffic: prefill runs one prompt padded to a bucket length ([1, L]) into one
slot's cache row; decode runs the first B slots at once ([B, 1]) for B a power of two up to the slot
count (the engine fills low slots first, so a lightly loaded server runs a small, fast step), attending
over the first K cache positions for K the smallest length bucket past the longest live row (so a step
costs what the rows in flight need, not the whole context). So the set of XLA programs (one prefill per
length bucket, one decode per batch bucket x length bucket) is known up front and `warm_up` compiles all
of them before the server reports ready.
"""

from __future__ import annotations

import bisect
import functools
import logging
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jax_llm.model import GPT, KVCache, init_cache
from jax_llm.serving.sampling import choose_tokens

log = logging.getLogger(__name__)


class SlotParams:
    """Per-slot sampling settings as host arrays, sent with every step. S = number of slots."""

    def __init__(self, slots: int):
        self.key_data = np.zeros((slots, 2), np.uint32)  # [S, 2] raw PRNG key of the request's seed
        self.temperature = np.ones(slots, np.float32)  # [S]
        self.top_k = np.zeros(slots, np.int32)  # [S], 0 = off
        self.top_p = np.ones(slots, np.float32)  # [S], 1.0 = off
        self.greedy = np.ones(slots, bool)  # [S]

    def set(
        self, slot: int, key_data: np.ndarray, temperature: float, top_k: int, top_p: float, greedy: bool
    ) -> None:
        """Installs one request's settings in its slot."""
        self.key_data[slot] = key_data
        self.temperature[slot], self.top_k[slot], self.top_p[slot] = temperature, top_k, top_p
        self.greedy[slot] = greedy

    def row(self, slot: int) -> tuple[np.ndarray, ...]:
        """One slot's settings as [1]-shaped arrays (for prefill)."""
        s = slice(slot, slot + 1)
        return self.key_data[s], self.temperature[s], self.top_k[s], self.top_p[s], self.greedy[s]

    def first(self, rows: int) -> tuple[np.ndarray, ...]:
        """The settings of slots 0..rows-1 (for decode)."""
        return (
            self.key_data[:rows],
            self.temperature[:rows],
            self.top_k[:rows],
            self.top_p[:rows],
            self.greedy[:rows],
        )


def _prefill(
    graphdef, params, cache: KVCache, slot, tokens, length, key_data, temperature, top_k, top_p, greedy
):
    """tokens: [1, L] (padded); length: the real prompt length. Returns (token, logprob, cache)."""
    model = nnx.merge(graphdef, params)
    # A fresh row of the bucket's length, computed apart and then written over the slot's first L
    # positions: reading the slot's old row out of the cache first would make XLA copy the whole cache.
    # Positions past L keep an earlier request's values; the mask never lets a query see them.
    row = jax.tree.map(lambda c: jnp.zeros((1, c.shape[1], tokens.shape[1], c.shape[3]), c.dtype), cache)
    positions = jnp.arange(tokens.shape[1])[None, :]  # [1, L]
    # Padding positions >= length write junk keys into the row; decode overwrites each position before
    # any query can attend to it (the mask stops at the query's own position), so the junk is never read.
    logits, row = model(tokens, positions, row)  # [1, L, V]; row per layer [1, N, L, H]
    cache = jax.tree.map(lambda c, r: jax.lax.dynamic_update_slice(c, r, (slot, 0, 0, 0)), cache, row)
    last = jax.lax.dynamic_index_in_dim(logits[0], length - 1, axis=0, keepdims=True)  # [1, V]
    step = jnp.zeros((1,), jnp.int32)  # the first generated token
    token, logprob = choose_tokens(last, key_data, step, temperature, top_k, top_p, greedy)
    return token[0], logprob[0], cache


def _decode(
    graphdef, params, cache: KVCache, tokens, positions, step, key_data, temperature, top_k, top_p, greedy,
    *, kv_len
):
    """tokens, positions, step: [B] for slots 0..B-1, each position < kv_len (static) or idle.

    Feeds each row its last token; returns ([B], [B], cache).
    """
    model = nnx.merge(graphdef, params)
    # The model updates the cache's first B rows in place and leaves the rest (no slice copied out and back);
    # attention reads positions 0..kv_len-1 of those rows.
    logits, cache = model(tokens[:, None], positions[:, None], cache, kv_len=kv_len)  # [B, 1, V]
    token, logprob = choose_tokens(logits[:, 0], key_data, step, temperature, top_k, top_p, greedy)
    return token, logprob, cache


class ModelRunner:
    """Owns the parameters and the KV cache on the device; the engine drives it one step at a time."""

    def __init__(self, model: GPT, slots: int, buckets: list[int]):
        self.config = model.config
        self.slots = slots
        self.buckets = sorted(buckets)
        self.batch_buckets = [1 << i for i in range(slots.bit_length()) if 1 << i < slots] + [slots]
        graphdef, self._params = nnx.split(model)
        self._cache = init_cache(self.config, slots)  # per layer: [S, N, max_seq_len, H]
        # The cache is donated: XLA updates it in place instead of copying it every step.
        self._prefill = jax.jit(functools.partial(_prefill, graphdef), donate_argnums=(1,))
        self._decode = jax.jit(
            functools.partial(_decode, graphdef), donate_argnums=(1,), static_argnames=("kv_len",)
        )
        self.idle_position = self.config.max_seq_len  # out of range: an idle slot's cache write is dropped

    def bucket(self, length: int) -> int:
        """The padded length a prompt of `length` tokens is prefilled at (and the decode key-length bound)."""
        return self.buckets[bisect.bisect_left(self.buckets, length)]

    def prefill(self, slot: int, prompt: list[int], sampling: tuple[np.ndarray, ...]) -> tuple[int, float]:
        """Writes `prompt` into `slot`'s cache row; returns the first generated token and its logprob."""
        padded = np.zeros((1, self.bucket(len(prompt))), np.int32)
        padded[0, : len(prompt)] = prompt
        token, logprob, self._cache = self._prefill(
            self._params, self._cache, np.int32(slot), padded, np.int32(len(prompt)), *sampling
        )
        token, logprob = jax.device_get((token, logprob))
        return int(token), float(logprob)

    def decode(
        self, tokens: np.ndarray, positions: np.ndarray, step: np.ndarray, sampling: SlotParams, rows: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """One decode step over slots 0..rows-1 (padded to a batch bucket); returns ([B], [B]) on the host.

        tokens, positions, step: [S] host arrays for every slot; only the first B are sent. Idle slots
        hold `idle_position`; the others' positions pick the key-length bucket.
        """
        b = self.batch_buckets[bisect.bisect_left(self.batch_buckets, rows)]
        live = positions[:b][positions[:b] < self.idle_position]
        kv_len = self.bucket(int(live.max()) + 1 if live.size else 1)
        return self._decode_step(tokens[:b], positions[:b], step[:b], sampling.first(b), kv_len)

    def _decode_step(
        self, tokens: np.ndarray, positions: np.ndarray, step: np.ndarray, sampling: tuple, kv_len: int
    ) -> tuple[np.ndarray, np.ndarray]:
        token, logprob, self._cache = self._decode(
            self._params, self._cache, tokens, positions, step, *sampling, kv_len=kv_len
        )
        return jax.device_get((token, logprob))

    def warm_up(self) -> float:
        """Compiles (or loads from the persistent cache) every program serving will run; returns seconds."""
        start = time.perf_counter()
        sampling = SlotParams(self.slots)
        for bucket in self.buckets:
            self.prefill(0, [0] * bucket, sampling.row(0))
        idle = np.full(self.slots, self.idle_position, np.int32)  # writes dropped: the cache is unchanged
        zeros = np.zeros(self.slots, np.int32)
        for rows in self.batch_buckets:
            for kv_len in self.buckets:
                self._decode_step(zeros[:rows], idle[:rows], zeros[:rows], sampling.first(rows), kv_len)
        elapsed = time.perf_counter() - start
        log.info(
            "compiled prefill for prompt buckets %s and decode for batch buckets %s x key-length buckets %s "
            "(%d programs) in %.1f s",
            self.buckets,
            self.batch_buckets,
            self.buckets,
            len(self.buckets) * (1 + len(self.batch_buckets)),
            elapsed,
        )
        return elapsed
