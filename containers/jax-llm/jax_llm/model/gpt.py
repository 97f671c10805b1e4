"""A GPT/Llama-style decoder in Flax NNX: pre-norm blocks, rotary positions, optional KV cache.

The config picks the family's parts (`model/config.py`): grouped-query or plain multi-head attention,
GELU or SwiGLU MLP, tied or untied output embedding, and whether the blocks are unrolled (`blocks.0`,
`blocks.1`, ...: today's exported GPT models) or one block whose weights are stacked [n_layers, ...]
(`layers`) and run by `jax.lax.scan`, so a 32- or 40-layer model compiles one block, not 40.

One forward pass serves both uses. Training calls `model(tokens)` and gets causal self-attention
(cuDNN flash attention on GPU). Serving passes a `KVCache` and per-row `positions`: each row writes
its new keys and values at its own positions and attends to everything at or before them, so rows
of one batch can be at different points of different requests (continuous batching).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jax_llm.model.config import ModelConfig


class LayerCache(NamedTuple):
    """Keys and values of one layer: [batch, kv_heads, max_len, head_dim] each (kv_heads < n_heads with GQA).

    Heads before positions: a decode step's attention is then one batched matmul per head over
    contiguous keys; [batch, max_len, n_heads, head_dim] made XLA on CPU transpose the cache every step.
    """

    k: jax.Array
    v: jax.Array


KVCache = tuple[LayerCache, ...]  # one entry per layer


def init_cache(config: ModelConfig, batch: int, max_len: int | None = None) -> KVCache:
    """An all-zero cache for `batch` rows of up to `max_len` (default: the model's context) tokens."""
    shape = (batch, config.kv_heads, max_len or config.max_seq_len, config.head_dim)
    dtype = jnp.dtype(config.compute_dtype)
    return tuple(LayerCache(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype)) for _ in range(config.n_layers))


def apply_rotary(x: jax.Array, positions: jax.Array, theta: float) -> jax.Array:
    """Rotates pairs of channels by position-dependent angles. x: [B, T, N, H]; positions: [B, T]."""
    half = x.shape[-1] // 2
    inv_freq = 1.0 / (theta ** (jnp.arange(half, dtype=jnp.float32) / half))  # [H/2]
    angles = positions[..., None].astype(jnp.float32) * inv_freq  # [B, T, H/2]
    sin, cos = jnp.sin(angles)[:, :, None, :], jnp.cos(angles)[:, :, None, :]  # [B, T, 1, H/2]
    x1, x2 = x[..., :half].astype(jnp.float32), x[..., half:].astype(jnp.float32)
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(x.dtype)


def _linear(d_in: int, d_out: int, config: ModelConfig, std: float, rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(
        d_in,
        d_out,
        use_bias=False,
        dtype=jnp.dtype(config.compute_dtype),
        param_dtype=jnp.dtype(config.param_dtype),
        kernel_init=nnx.initializers.normal(std),
        rngs=rngs,
    )


def _rms_norm(config: ModelConfig, rngs: nnx.Rngs) -> nnx.RMSNorm:
    return nnx.RMSNorm(
        config.d_model,
        epsilon=1e-6,
        dtype=jnp.dtype(config.compute_dtype),
        param_dtype=jnp.dtype(config.param_dtype),
        rngs=rngs,
    )


def group_qkv_columns(kernel, config: ModelConfig, groups: int):
    """The fused projection's kernel [..., D, (N + 2K) H] from [all q, all k, all v] (as trained and
    exported) to `groups` blocks of [q, k, v] (`ModelConfig.qkv_groups`); head order is kept, so a model
    with qkv_groups=groups computes exactly what the ungrouped one does. Works on numpy or JAX arrays."""
    n, kv, h = config.n_heads, config.kv_heads, config.head_dim
    xp = jnp if isinstance(kernel, jax.Array) else np
    q, k, v = xp.split(kernel, [n * h, (n + kv) * h], axis=-1)
    blocks = []
    for i in range(groups):
        for part, heads in ((q, n), (k, kv), (v, kv)):
            width = heads // groups * h
            blocks.append(part[..., i * width : (i + 1) * width])
    return xp.concatenate(blocks, axis=-1)


class Attention(nnx.Module):
    """Causal self-attention with rotary positions: multi-head, or grouped-query when kv_heads < n_heads.

    One fused projection [D, (N + 2K) H] gives q (N heads), k and v (K heads each); with K == N it is
    the [D, 3D] `qkv` of the GPT presets, laid out as before. Query head n reads key/value head n // (N/K).
    """

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        self.config = config
        d = config.d_model
        self.qkv = _linear(d, (config.n_heads + 2 * config.kv_heads) * config.head_dim, config, 0.02, rngs)
        # GPT-2's scaled init: residual branches sum over 2 * n_layers contributions.
        self.out = _linear(d, d, config, 0.02 / math.sqrt(2 * config.n_layers), rngs)

    def __call__(
        self,
        x: jax.Array,
        positions: jax.Array,
        cache: LayerCache | None,
        kv_len: int | None = None,
        fresh: bool = False,
    ) -> tuple[jax.Array, LayerCache | None]:
        """kv_len (static): attend over only the cache's first kv_len positions (default: all of them).
        fresh (static): the tokens are a whole prompt at positions 0..T-1 and `cache` only the rows to fill
        ([B, K, T, H]): attention is causal over the tokens themselves, by the fused kernel training uses
        (cuDNN flash attention on GPU: no [T, T] scores in memory), and their keys and values become the rows."""
        cfg = self.config
        batch, seq, _ = x.shape
        n, kv, h, g = cfg.n_heads, cfg.kv_heads, cfg.head_dim, cfg.qkv_groups
        # [B, T, G, (N + 2K) H / G]: per group its query heads, then its key and value heads.
        grouped_qkv = self.qkv(x).reshape(batch, seq, g, (n + 2 * kv) * h // g)
        q, k, v = jnp.split(grouped_qkv, [n // g * h, (n + kv) // g * h], axis=-1)
        q = q.reshape(batch, seq, n, h)  # [B, T, N, H]
        k, v = k.reshape(batch, seq, kv, h), v.reshape(batch, seq, kv, h)  # [B, T, K, H]
        q = apply_rotary(q, positions, cfg.rope_theta)
        k = apply_rotary(k, positions, cfg.rope_theta)

        if cache is None or fresh:
            y = jax.nn.dot_product_attention(
                q, k, v, is_causal=True, implementation=cfg.attention_implementation()
            )
            if fresh:
                cache = LayerCache(
                    k.swapaxes(1, 2).astype(cache.k.dtype), v.swapaxes(1, 2).astype(cache.v.dtype)
                )
        else:
            # Write this step's keys/values at each row's own positions, then attend over the whole
            # cache up to each query's position. Slots past a row's position may hold stale values
            # from an earlier request; the mask never lets a query see them.
            # The cache may hold more rows than the batch (a server's slots): the batch is its first
            # B rows, updated in place; the others are left as they are.
            # A caller that knows every query position is below kv_len passes it, so that a decode step
            # costs what the longest live row needs rather than the whole context.
            rows = jnp.arange(batch)[:, None]  # [B, 1]
            # Index (row, :, position) takes a [B, T, N, H] update: the indexed dims come first.
            k_all = cache.k.at[rows, :, positions].set(k.astype(cache.k.dtype), mode="drop")
            v_all = cache.v.at[rows, :, positions].set(v.astype(cache.v.dtype), mode="drop")
            kv_len = k_all.shape[2] if kv_len is None else kv_len
            k_used, v_used = k_all[:batch, :, :kv_len], v_all[:batch, :, :kv_len]  # [B, K, S, H]
            # Query heads grouped by the key/value head they read: [B, T, K, G, H], G = N / K.
            grouped = q.reshape(batch, seq, kv, n // kv, h)
            scores = jnp.einsum("btkgh,bksh->bkgts", grouped, k_used, preferred_element_type=jnp.float32)
            scores = scores / math.sqrt(cfg.head_dim)
            mask = jnp.arange(kv_len)[None, None, :] <= positions[:, :, None]  # [B, T, S]
            scores = jnp.where(mask[:, None, None], scores, jnp.finfo(jnp.float32).min)  # [B, K, G, T, S]
            probs = jax.nn.softmax(scores, axis=-1).astype(v_used.dtype)
            y = jnp.einsum("bkgts,bksh->btkgh", probs, v_used).reshape(batch, seq, n, h)  # [B, T, N, H]
            cache = LayerCache(k_all, v_all)
        return self.out(y.reshape(batch, seq, cfg.d_model)), cache


class Block(nnx.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        d, f = config.d_model, config.d_ff
        self.swiglu = config.mlp == "swiglu"
        self.attn_norm = _rms_norm(config, rngs)
        self.attn = Attention(config, rngs=rngs)
        self.mlp_norm = _rms_norm(config, rngs)
        if self.swiglu:
            self.mlp_gate = _linear(d, f, config, 0.02, rngs)
            self.mlp_up = _linear(d, f, config, 0.02, rngs)
        else:
            self.mlp_in = _linear(d, f, config, 0.02, rngs)
        self.mlp_out = _linear(f, d, config, 0.02 / math.sqrt(2 * config.n_layers), rngs)

    def __call__(
        self,
        x: jax.Array,
        positions: jax.Array,
        cache: LayerCache | None,
        kv_len: int | None = None,
        fresh: bool = False,
    ) -> tuple[jax.Array, LayerCache | None]:
        h, cache = self.attn(self.attn_norm(x), positions, cache, kv_len, fresh)
        x = x + h
        y = self.mlp_norm(x)
        # [B, T, F]
        hidden = (
            jax.nn.silu(self.mlp_gate(y)) * self.mlp_up(y) if self.swiglu else jax.nn.gelu(self.mlp_in(y))
        )
        return x + self.mlp_out(hidden), cache


def _block_forward(block: Block, x: jax.Array, positions: jax.Array) -> jax.Array:
    return block(x, positions, None)[0]


# Training-only: recompute the block's activations during the backward pass instead of storing them.
_remat_block_forward = nnx.remat(_block_forward)


def _stacked_blocks(config: ModelConfig, rngs: nnx.Rngs) -> Block:
    """One Block whose every weight has a leading [n_layers] axis: layer i's initialised from its own key."""
    graphdef = nnx.split(nnx.eval_shape(lambda: Block(config, rngs=nnx.Rngs(0))))[0]  # structure only
    keys = jax.random.split(rngs.params(), config.n_layers)
    state = jax.vmap(lambda key: nnx.split(Block(config, rngs=nnx.Rngs(params=key)))[1])(keys)
    return nnx.merge(graphdef, state)


def _scan_blocks(layers: Block, x: jax.Array, positions: jax.Array, remat: bool) -> jax.Array:
    """The training/prefill forward through stacked layers: one compiled block, looped n_layers times."""
    graphdef, stacked = nnx.split(layers)

    def body(h, layer_state):  # h: [B, T, D]; layer_state: one layer's slice of the stacked weights
        return _block_forward(nnx.merge(graphdef, layer_state), h, positions), None

    if remat:
        # Save nothing but each layer's input (the scan carry); the backward pass recomputes the rest.
        # prevent_cse=False is safe inside scan and lets XLA optimise the recomputation.
        body = jax.checkpoint(body, prevent_cse=False, policy=jax.checkpoint_policies.nothing_saveable)
    return jax.lax.scan(body, x, stacked)[0]


def _layer(layers: Block, i: int) -> Block:
    """Layer i of the stacked weights, as a Block (a static slice: no copy once XLA fuses it)."""
    graphdef, stacked = nnx.split(layers)
    return nnx.merge(graphdef, jax.tree.map(lambda w: w[i], stacked))


class GPT(nnx.Module):
    """Decoder-only language model. Logits come back in float32 whatever the compute dtype."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.embed = nnx.Embed(
            config.vocab_size,
            config.d_model,
            dtype=jnp.dtype(config.compute_dtype),
            param_dtype=jnp.dtype(config.param_dtype),
            embedding_init=nnx.initializers.normal(0.02),
            rngs=rngs,
        )
        if config.scan_layers:
            self.layers = _stacked_blocks(config, rngs)
        else:
            self.blocks = nnx.List([Block(config, rngs=rngs) for _ in range(config.n_layers)])
        self.final_norm = _rms_norm(config, rngs)
        if not config.tie_embeddings:
            self.lm_head = _linear(config.d_model, config.vocab_size, config, 0.02, rngs)

    def __call__(
        self,
        tokens: jax.Array,
        positions: jax.Array | None = None,
        cache: KVCache | None = None,
        *,
        kv_len: int | None = None,
        logits_at: jax.Array | None = None,
        fresh: bool = False,
    ) -> tuple[jax.Array, KVCache | None]:
        """tokens: [B, T] int32; positions: [B, T] (default 0..T-1). Returns ([B, T, vocab] f32, cache).

        kv_len (static, with a cache): every query position is below it, so attention reads only the
        cache's first kv_len positions; default the whole cache. logits_at: [B] the one position of each row
        whose logits are wanted (a server's prefill: the prompt's last token); then the logits are [B, vocab]
        and the output projection runs on B positions instead of B x T. fresh (with a cache of exactly T
        positions): a server's prefill, see `Attention`.
        """
        if positions is None:
            positions = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)
        x = self.embed(tokens)  # [B, T, D]
        new_cache = []
        if self.config.scan_layers and cache is None:
            x = _scan_blocks(self.layers, x, positions, self.config.remat)
        else:
            # With a cache the layers stay a Python loop, scanned model or not: the cache is a tuple of
            # per-layer arrays that serving updates in place (donated), which a scan over a stacked
            # [n_layers, ...] cache would rewrite as a whole every step.
            blocks = (
                self.blocks
                if not self.config.scan_layers
                else [_layer(self.layers, i) for i in range(self.config.n_layers)]
            )
            for i, block in enumerate(blocks):
                if cache is not None:
                    x, layer_cache = block(x, positions, cache[i], kv_len, fresh)
                    new_cache.append(layer_cache)
                elif self.config.remat:
                    x = _remat_block_forward(block, x, positions)
                else:
                    x = _block_forward(block, x, positions)
        if logits_at is not None:
            x = jnp.take_along_axis(x, logits_at[:, None, None], axis=1)[:, 0]  # [B, D]
        x = self.final_norm(x)
        # Output projection: the input embedding's transpose (tied) or a matrix of its own [D, V].
        logits = (self.embed.attend(x) if self.config.tie_embeddings else self.lm_head(x)).astype(jnp.float32)
        return logits, (tuple(new_cache) if cache is not None else None)
