"""The server's prefill: attention through the cache (einsum over the fresh rows, masked) against the fused
causal kernel (`jax.nn.dot_product_attention`, cuDNN flash attention on a GPU in bf16), in one run.

    PYTHONPATH=containers/jax-llm .venv/bin/python bench/prefill_attention.py [--preset 125m --layers 4]

Both are the model's own forward with a fresh cache (`GPT(..., fresh=...)`), jitted, on `--rows` random
prompts of `--length` tokens; prints seconds per call (after one compile call), the ratio fused / einsum,
and the largest difference of the last token's logits. XLA's per-device temporaries of each are printed too.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jax_llm.model.config import ModelConfig
from jax_llm.model.gpt import GPT, init_cache


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="125m")
    parser.add_argument(
        "--layers", type=int, default=4, help="fewer layers than the preset: the same per layer"
    )
    parser.add_argument("--rows", type=int, default=2)
    parser.add_argument("--length", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    on_gpu = jax.default_backend() == "gpu"
    dtype = "bfloat16" if on_gpu else "float32"
    config = ModelConfig.preset(
        args.preset, max_seq_len=args.length, n_layers=args.layers, compute_dtype=dtype, param_dtype=dtype
    )
    graphdef, state = nnx.split(GPT(config, rngs=nnx.Rngs(0)))
    tokens = jnp.asarray(
        np.random.default_rng(0).integers(0, config.vocab_size, (args.rows, args.length)), jnp.int32
    )

    def prefill(fresh: bool):
        @jax.jit
        def call(state, tokens):
            rows, length = tokens.shape
            positions = jnp.broadcast_to(jnp.arange(length)[None], (rows, length))
            model = nnx.merge(graphdef, state)
            return model(
                tokens,
                positions,
                init_cache(config, rows, length),
                logits_at=jnp.full(rows, length - 1),
                fresh=fresh,
            )

        return call

    seconds, logits = {}, {}
    for name, fresh in (("einsum", False), ("fused", True)):
        call = prefill(fresh)
        temporaries = call.lower(state, tokens).compile().memory_analysis().temp_size_in_bytes
        jax.block_until_ready(call(state, tokens))
        started = time.perf_counter()
        for _ in range(args.repeats):
            out = jax.block_until_ready(call(state, tokens))
        seconds[name] = (time.perf_counter() - started) / args.repeats
        logits[name] = np.asarray(out[0], np.float32)
        print(
            f"{name:7s} {seconds[name]:.3f} s per call, XLA temporaries {temporaries / 2**20:.1f} MiB",
            flush=True,
        )
    device = jax.devices()[0]
    print(
        f"{args.preset} ({args.layers} layers, {dtype}), {args.rows} x {args.length} tokens on {device.device_kind}: "
        f"fused / einsum = {seconds['fused'] / seconds['einsum']:.2f}; "
        f"largest logit difference {np.abs(logits['fused'] - logits['einsum']).max():.2g}"
    )


if __name__ == "__main__":
    main()
