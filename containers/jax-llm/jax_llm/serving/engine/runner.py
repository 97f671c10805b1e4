"""The model on the accelerator: a KV cache of fixed slots, compiled batched prefill, decode steps.

Shapes never depend on traffic: prefill runs P prompts at once, each padded to the longest one's
bucket length ([P, L], P a power of two up to `max_prefill_batch`), each into its own slot's cache
row (short prefills are bound by reading the weights, so P prompts cost little more than one);
decode runs the first B slots at once ([B, 1]) for B a power of two up to the slot count (the engine
fills low slots first, so a lightly loaded server runs a small, fast step), attending over the first
K cache positions for K the smallest length bucket past the longest live row (so a step costs what
the rows in flight need, not the whole context). So the set of XLA programs (one prefill per prefill
batch bucket x length bucket, one decode per batch bucket x length bucket) is known up front and
`warm_up` compiles all of them before the server reports ready.

Each slot's latest token stays on the device (prefill and decode write it; decode reads it), so a
decode step needs nothing from the step before it on the host: `decode` returns at once with the
step in flight, and the engine launches step N+1 before it reads step N's tokens back.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jax_llm.contract.serving import DEFAULT_PREFILL_TOKENS, doubling, prefill_rows_at
from jax_llm.model.config import ModelConfig
from jax_llm.model.gpt import GPT, KVCache, init_cache
from jax_llm.serving.engine import tensor_parallel
from jax_llm.serving.engine.sampling import choose_tokens

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

    def rows(self, slots: list[int]) -> tuple[np.ndarray, ...]:
        """The settings of the given slots as [P]-leading arrays, in that order (for prefill)."""
        s = np.asarray(slots)
        return self.key_data[s], self.temperature[s], self.top_k[s], self.top_p[s], self.greedy[s]

    def first(self, rows: int) -> tuple[np.ndarray, ...]:
        """Copies of the settings of slots 0..rows-1 (for decode: a step in flight keeps its own)."""
        return tuple(
            a[:rows].copy() for a in (self.key_data, self.temperature, self.top_k, self.top_p, self.greedy)
        )


@dataclasses.dataclass(frozen=True)
class DecodeStep:
    """A decode step launched on the device; `result` waits for it."""

    tokens: jax.Array  # [B]
    logprobs: jax.Array  # [B]

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """The step's tokens and logprobs on the host ([B] each), once the device has them."""
        return jax.device_get((self.tokens, self.logprobs))


def _real_vocab(logits: jax.Array, sample_vocab: int) -> jax.Array:
    """logits [..., V] with the ids past the tokenizer's (padding rows) at -inf: never drawn."""
    if sample_vocab >= logits.shape[-1]:
        return logits
    return jnp.where(jnp.arange(logits.shape[-1]) < sample_vocab, logits, -jnp.inf)


def _prefill(
    graphdef,
    params,
    cache: KVCache,
    last,
    slots,
    tokens,
    lengths,
    key_data,
    temperature,
    top_k,
    top_p,
    greedy,
    *,
    sample_vocab,
):
    """slots, lengths: [P]; tokens: [P, L] (padded); last: [S]. Returns (tokens [P], logprobs [P], cache, last).

    Row p goes to cache row slots[p]; a slot may repeat only with identical inputs (batch padding).
    """
    model = nnx.merge(graphdef, params)
    batch, length = tokens.shape
    # Fresh rows of the bucket's length, computed apart and then written over each slot's first L
    # positions: reading the slots' old rows out of the cache first would make XLA copy the whole cache.
    # Positions past L keep an earlier request's values; the mask never lets a query see them.
    rows = jax.tree.map(lambda c: jnp.zeros((batch, c.shape[1], length, c.shape[3]), c.dtype), cache)
    positions = jnp.broadcast_to(jnp.arange(length)[None, :], (batch, length))  # [P, L]
    # Padding positions >= lengths[p] write junk keys into the row; decode overwrites each position before
    # any query can attend to it (the mask stops at the query's own position), so the junk is never read.
    # Fresh rows: each prompt attends to itself by the fused causal kernel, and its keys and values become
    # its rows (per layer [P, K, L, H]). Logits of each prompt's last token only ([P, V]): the L x V others
    # would be thrown away.
    logits, rows = model(tokens, positions, rows, logits_at=lengths - 1, fresh=True)
    for p in range(batch):  # P in-place row writes into the donated cache (a scatter would copy it)
        cache = jax.tree.map(
            lambda c, r, p=p: jax.lax.dynamic_update_slice(c, r[p : p + 1], (slots[p], 0, 0, 0)), cache, rows
        )
    final = _real_vocab(logits, sample_vocab)
    step = jnp.zeros((batch,), jnp.int32)  # the first generated token
    token, logprob = choose_tokens(final, key_data, step, temperature, top_k, top_p, greedy)
    return token, logprob, cache, last.at[slots].set(token)  # each slot's next decode input


def _decode(
    graphdef,
    params,
    cache: KVCache,
    last,
    positions,
    step,
    key_data,
    temperature,
    top_k,
    top_p,
    greedy,
    *,
    kv_len,
    sample_vocab,
):
    """positions, step: [B] for slots 0..B-1, each position < kv_len (static) or idle; last: [S].

    Feeds each row its latest token (last[:B]); returns (tokens [B], logprobs [B], cache, last).
    """
    model = nnx.merge(graphdef, params)
    tokens = last[: positions.shape[0]]
    # The model updates the cache's first B rows in place and leaves the rest (no slice copied out and back);
    # attention reads positions 0..kv_len-1 of those rows.
    logits, cache = model(tokens[:, None], positions[:, None], cache, kv_len=kv_len)  # [B, 1, V]
    token, logprob = choose_tokens(
        _real_vocab(logits[:, 0], sample_vocab), key_data, step, temperature, top_k, top_p, greedy
    )
    return token, logprob, cache, jax.lax.dynamic_update_slice(last, token, (0,))


def programs(graphdef, config: ModelConfig, sample_vocab: int, mesh=None) -> tuple[Callable, Callable]:
    """The prefill and decode programs as the runner runs them: the cache and the latest tokens donated, so
    XLA updates them in place instead of copying them every step; over a tensor-parallel `mesh`, outputs keep
    the inputs' layout, so each program compiles once."""
    placed = {}
    if mesh is not None:
        whole = tensor_parallel.replicated(mesh)
        placed = {
            "out_shardings": (whole, whole, tensor_parallel.cache_sharding(mesh, config.kv_heads), whole)
        }
    prefill = jax.jit(
        functools.partial(_prefill, graphdef, sample_vocab=sample_vocab), donate_argnums=(1, 2), **placed
    )
    decode = jax.jit(
        functools.partial(_decode, graphdef, sample_vocab=sample_vocab),
        donate_argnums=(1, 2),
        static_argnames=("kv_len",),
        **placed,
    )
    return prefill, decode


class ModelRunner:
    """Owns the parameters and the KV cache on the device; the engine drives it one step at a time."""

    def __init__(
        self,
        model: GPT,
        slots: int,
        buckets: list[int],
        max_prefill_batch: int = 8,
        sample_vocab: int | None = None,
        mesh=None,
        max_prefill_tokens: int = DEFAULT_PREFILL_TOKENS,
    ):
        """`sample_vocab`: the tokenizer's vocabulary size; ids from it up to the model's (padded) vocabulary
        are never sampled. None: the model's whole vocabulary. `mesh`: a `tensor_parallel` mesh to split the
        weights and the cache over (None: one device). `max_prefill_tokens`: rows x padded length of one
        prefill call at most (long prompts are prefilled fewer at a time)."""
        self.config = model.config
        self.sample_vocab = sample_vocab or model.config.vocab_size
        self.slots = slots
        self.buckets = sorted(buckets)
        self.batch_buckets = doubling(slots)
        self.prefill_buckets = doubling(min(max_prefill_batch, slots))
        self.max_prefill_tokens = max_prefill_tokens
        self.shards = 1 if mesh is None else mesh.devices.size  # devices the model is split over
        graphdef, self._params = nnx.split(model)
        if mesh is None:
            self._cache = init_cache(self.config, slots)  # per layer: [S, K, max_seq_len, H]
            self._last = jnp.zeros(slots, jnp.int32)  # [S]: each slot's latest token, the next decode input
        else:
            self._params = tensor_parallel.shard_params(self._params, mesh)
            # Each device allocates only its own heads of the cache.
            cache_layout = tensor_parallel.cache_sharding(mesh, self.config.kv_heads)
            self._cache = jax.jit(lambda: init_cache(self.config, slots), out_shardings=cache_layout)()
            self._last = jnp.zeros(slots, jnp.int32, device=tensor_parallel.replicated(mesh))
        jax.block_until_ready((self._cache, self._last))  # allocated now, not within the first compile's time
        self._prefill, self._decode = programs(graphdef, self.config, self.sample_vocab, mesh)
        self.idle_position = self.config.max_seq_len  # out of range: an idle slot's cache write is dropped

    @property
    def params(self):
        """The model's arrays as placed on the device(s)."""
        return self._params

    def bucket(self, length: int) -> int:
        """The padded length a prompt of `length` tokens is prefilled at (and the decode key-length bound)."""
        return self.buckets[bisect.bisect_left(self.buckets, length)]

    def rows_at(self, bucket: int) -> int:
        """Prompts one prefill call takes when padded to `bucket` (`prefill_rows_at`)."""
        return prefill_rows_at(bucket, self.prefill_buckets[-1], self.max_prefill_tokens)

    def prefill_batch(self, lengths: list[int]) -> int:
        """How many of the waiting prompts (their `lengths`, shortest first) the next prefill call takes: as
        many as the bucket of the longest of them allows, at least one."""
        take = 1
        while take < len(lengths) and take + 1 <= self.rows_at(self.bucket(lengths[take])):
            take += 1
        return take

    def prefill(
        self, slots: list[int], prompts: list[list[int]], sampling: SlotParams
    ) -> list[tuple[int, float]]:
        """Writes prompts[i] into cache row slots[i] in one call; returns each first token and its logprob.

        At most `rows_at` the bucket of the longest prompt; they are padded to that bucket, and the
        batch to a prefill bucket by repeating the last prompt (same slot, same values written twice).
        """
        if len(prompts) > self.rows_at(self.bucket(max(map(len, prompts)))):
            raise ValueError(f"{len(prompts)} prompts are more than one prefill call takes (prefill_batch)")
        p = self.prefill_buckets[bisect.bisect_left(self.prefill_buckets, len(prompts))]
        order = list(range(len(prompts))) + [len(prompts) - 1] * (p - len(prompts))
        padded = np.zeros((p, self.bucket(max(map(len, prompts)))), np.int32)  # [P, L]
        for row, i in enumerate(order):
            padded[row, : len(prompts[i])] = prompts[i]
        rows = [slots[i] for i in order]
        tokens, logprobs, self._cache, self._last = self._prefill(
            self._params,
            self._cache,
            self._last,
            np.asarray(rows, np.int32),
            padded,
            np.array([len(prompts[i]) for i in order], np.int32),
            *sampling.rows(rows),
        )
        tokens, logprobs = jax.device_get((tokens, logprobs))
        return [(int(tokens[i]), float(logprobs[i])) for i in range(len(prompts))]

    def decode(self, positions: np.ndarray, step: np.ndarray, sampling: SlotParams, rows: int) -> DecodeStep:
        """Launches one decode step over slots 0..rows-1 (padded to a batch bucket) and returns at once.

        Each row is fed its slot's latest token (from its prefill or the step before) at its position.
        positions, step: [S] host arrays for every slot (step: the index of the token being generated,
        for the sampling key); only the first B are sent. Idle slots hold `idle_position`; the others'
        positions pick the key-length bucket. `result()` gives ([B], [B]) on the host.
        """
        b = self.batch_buckets[bisect.bisect_left(self.batch_buckets, rows)]
        live = positions[:b][positions[:b] < self.idle_position]
        kv_len = self.bucket(int(live.max()) + 1 if live.size else 1)
        return self._decode_step(positions[:b].copy(), step[:b].copy(), sampling.first(b), kv_len)

    def _decode_step(
        self, positions: np.ndarray, step: np.ndarray, sampling: tuple, kv_len: int
    ) -> DecodeStep:
        token, logprob, self._cache, self._last = self._decode(
            self._params, self._cache, self._last, positions, step, *sampling, kv_len=kv_len
        )
        for array in (token, logprob):
            array.copy_to_host_async()  # the copy starts when the step ends, not when the engine asks
        return DecodeStep(token, logprob)

    def warm_up(self, timed: Callable[[str, int, int], AbstractContextManager] | None = None) -> float:
        """Compiles (or loads from the persistent cache) every program serving will run; returns seconds.

        `timed(program, batch, length)`, when given, wraps each program's warm-up call (the start budget)."""
        timed = timed or (lambda program, batch, length: contextlib.nullcontext())
        start = time.perf_counter()
        sampling = SlotParams(self.slots)
        for bucket in self.buckets:  # every prompt into slot 0: warm-up leaves only junk the mask hides
            for batch in (b for b in self.prefill_buckets if b <= self.rows_at(bucket)):
                with timed("prefill", batch, bucket):
                    self.prefill([0] * batch, [[0] * bucket] * batch, sampling)
        idle = np.full(self.slots, self.idle_position, np.int32)  # writes dropped: the cache is unchanged
        zeros = np.zeros(self.slots, np.int32)
        for rows in self.batch_buckets:
            for kv_len in self.buckets:
                with timed("decode", rows, kv_len):
                    self._decode_step(idle[:rows], zeros[:rows], sampling.first(rows), kv_len).result()
        elapsed = time.perf_counter() - start
        prefills = sum(b <= self.rows_at(bucket) for bucket in self.buckets for b in self.prefill_buckets)
        log.info(
            "compiled prefill for prefill batch buckets %s (up to %d prompt tokens a call) and decode for batch "
            "buckets %s, each x prompt/key-length buckets %s (%d programs) in %.1f s",
            self.prefill_buckets,
            self.max_prefill_tokens,
            self.batch_buckets,
            self.buckets,
            prefills + len(self.buckets) * len(self.batch_buckets),
            elapsed,
        )
        return elapsed
