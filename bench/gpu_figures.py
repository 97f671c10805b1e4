"""GPU figures in one run: training MFU of 1.3b and 7b, serving tokens/s at 1 and 32 concurrent requests.

Made for the day a GPU machine is lent: it needs only JAX (with CUDA), Flax, Optax and this repository's
`containers/jax-llm` on PYTHONPATH (no package registry, no data, no tokenizer, no HTTP server):

    PYTHONPATH=containers/jax-llm python bench/gpu_figures.py --out figures.json
    PYTHONPATH=containers/jax-llm python bench/gpu_figures.py --tiny      # the CPU rehearsal

Training: the trainer's own jitted step (`train_step.make_train_step`: FSDP over every local device,
bf16 compute, fp32 AdamW) on random tokens, `--steps` timed steps after two warm ones. The micro-batch
per device is the largest of 8, 4, 2, 1 whose compiled step XLA says fits the device's memory
(`memory_analysis()` against `memory_stats()["bytes_limit"]`); when not even one sequence of the whole
model fits (7b's 108 GB of fp32 weights and AdamW state on one 80 GB GPU), the model keeps its width
and loses layers until it fits, and the output says how many layers ran: MFU of the same matmuls.
MFU = tokens/s x FLOPs per token (6N + attention) / (devices x bf16 datasheet peak; measured f32
matmul peak on CPU).

Serving: the server's `ModelRunner` (continuous-batching slots, bucketed prefill, decode steps with the
next launched before the last is read, as the engine drives it) with the weights as the server loads
them (in the compute dtype: bf16 on GPU), random init. For c concurrent requests of a 128-token
prompt generating `--new-tokens`: c prompts prefilled, then decode steps over c rows; tokens/s =
c x new tokens / wall time from the first prefill to the last token. One untimed round compiles first.
Each serving line also gives the server's memory plan for its slots (`planned_bytes`, and its weights and
cache alone) and what XLA holds with the runner alive (`bytes_in_use`, GPU only): how far the plan is from
what a GPU really holds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jax_llm.contract.hyperparameters import TrainConfig
from jax_llm.model.config import ModelConfig
from jax_llm.model.gpt import GPT
from jax_llm.serving.engine.runner import ModelRunner, SlotParams
from jax_llm.serving.engine.tensor_parallel import served_model
from jax_llm.training import sharding
from jax_llm.training.optimizer import make_optimizer
from jax_llm.training.peak_flops import device_peak
from jax_llm.training.train_step import create_train_state, make_train_step, plan_train_state


def _device_limit() -> int | None:
    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("bytes_limit")


def _compiled_peak(model: ModelConfig, rows: int, seq: int, mesh) -> int:
    """XLA's per-device bytes of the train step at `rows` sequences per device (nothing allocated)."""
    n = mesh.devices.size
    config = TrainConfig(preset="tiny", batch_size=rows * n, seq_len=seq, max_steps=100)
    state = plan_train_state(model, make_optimizer(config), 0, mesh, True)
    batch = sharding.batch_sharding(mesh)
    tokens = jax.ShapeDtypeStruct((rows * n, seq + 1), jnp.int32, sharding=batch)
    stats = make_train_step(state, 1, batch).lower(state.state, tokens).compile().memory_analysis()
    return (
        stats.argument_size_in_bytes
        + stats.output_size_in_bytes
        - stats.alias_size_in_bytes
        + stats.temp_size_in_bytes
    )


def _fitting_shape(model: ModelConfig, seq: int, mesh) -> tuple[ModelConfig, int]:
    """(model, rows per device): the most rows (8, 4, 2, 1) that fit; the whole model, else fewer layers."""
    limit = _device_limit()
    if limit is None:  # CPU: no limit to respect
        return model, 2
    while _compiled_peak(model, 1, seq, mesh) > limit:  # one compile per try: a GPU's time is short
        if model.n_layers == 1:
            raise SystemExit(f"not even one layer of {model} fits {limit} bytes")
        model = dataclasses.replace(model, n_layers=max(1, model.n_layers // 2))
    rows = next((r for r in (8, 4, 2) if _compiled_peak(model, r, seq, mesh) <= limit), 1)
    return model, rows


def train_figures(preset: str, seq: int, steps: int, compute_dtype: str, remat: bool) -> dict:
    mesh = sharding.make_mesh()
    full = ModelConfig.preset(preset, max_seq_len=seq, compute_dtype=compute_dtype, remat=remat)
    model, rows = _fitting_shape(full, seq, mesh)
    n = mesh.devices.size
    config = TrainConfig(preset="tiny", batch_size=rows * n, seq_len=seq, max_steps=1000, warmup_steps=10)
    state = create_train_state(model, make_optimizer(config), 0, mesh, True)
    batch_sharding = sharding.batch_sharding(mesh)
    step = make_train_step(state, 1, batch_sharding)
    rng = np.random.default_rng(0)
    batch = sharding.global_batch(
        rng.integers(0, model.vocab_size, (rows * n, seq + 1), dtype=np.int32), batch_sharding, rows * n
    )
    started = time.perf_counter()
    for _ in range(2):  # compile, then one more so that donation and allocation have settled
        state.state, loss = step(state.state, batch)
    loss.block_until_ready()
    compile_s = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(steps):
        state.state, loss = step(state.state, batch)
    loss.block_until_ready()
    seconds = (time.perf_counter() - started) / steps
    tokens_per_s = rows * n * seq / seconds
    peak, source = device_peak(compute_dtype)
    mfu = tokens_per_s * model.flops_per_token(seq) / (peak * n) if peak else None
    return {
        "preset": preset,
        "layers": f"{model.n_layers} of {full.n_layers}",
        "devices": n,
        "rows_per_device": rows,
        "seq_len": seq,
        "remat": remat,
        "compute_dtype": compute_dtype,
        "step_s": round(seconds, 4),
        "tokens_per_s": round(tokens_per_s, 1),
        "mfu": None if mfu is None else round(mfu, 4),
        "peak": source,
        "first_two_steps_s": round(compile_s, 1),
    }


def serve_figures(
    preset: str, concurrency: list[int], prompt_len: int, new_tokens: int, compute_dtype: str, context: int
) -> list[dict]:
    config = ModelConfig.preset(
        preset, max_seq_len=context, compute_dtype=compute_dtype, param_dtype=compute_dtype
    )
    model = GPT(config, rngs=nnx.Rngs(0))  # weights in the compute dtype, as the server's loader keeps them
    slots = max(concurrency)
    buckets = [b for b in (128, 256, 512, 1024, 2048, 4096) if b < context] + [context]
    prefill_rows = 8 if jax.default_backend() == "gpu" else 1
    runner = ModelRunner(model, slots, buckets, max_prefill_batch=prefill_rows)
    planned = served_model(config).need(context, slots, 1, prefill_rows)
    rng = np.random.default_rng(1)
    figures = []
    for c in concurrency:
        prompts = [rng.integers(0, config.vocab_size, prompt_len).tolist() for _ in range(c)]
        for _ in range(2):  # the first round compiles every program it touches; the second is timed
            sampling = SlotParams(slots)  # greedy
            started = time.perf_counter()
            per_call = runner.rows_at(runner.bucket(prompt_len))
            for first in range(0, c, per_call):
                chunk = list(range(first, min(c, first + per_call)))
                runner.prefill(chunk, [prompts[i] for i in chunk], sampling)
            prefilled = time.perf_counter()
            positions = np.full(slots, runner.idle_position, np.int32)
            positions[:c] = prompt_len
            pending = None
            for step in range(1, new_tokens):
                launched = runner.decode(positions, np.full(slots, step, np.int32), sampling, c)
                if pending is not None:
                    pending.result()  # the engine reads step N while step N + 1 runs
                pending = launched
                positions[:c] += 1
            pending.result()
            elapsed = time.perf_counter() - started
        figures.append(
            {
                "preset": preset,
                "concurrent": c,
                "prompt_tokens": prompt_len,
                "new_tokens": new_tokens,
                "tokens_per_s": round(c * new_tokens / elapsed, 1),
                "per_request_tokens_per_s": round(new_tokens / elapsed, 1),
                "time_to_first_token_s": round(prefilled - started, 3),
                "compute_dtype": compute_dtype,
                # The server's memory plan for these slots on one device, against what XLA holds with the runner
                # alive (weights and cache; temporaries such as the prefill logits come and go): calibration.
                "planned_bytes": planned.total,
                "planned_weights_and_cache": planned.weights + planned.kv_cache,
                "bytes_in_use": (jax.devices()[0].memory_stats() or {}).get("bytes_in_use"),
            }
        )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="CPU rehearsal with the tiny presets")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    on_gpu = jax.default_backend() == "gpu"
    dtype = "bfloat16" if on_gpu else "float32"
    if args.tiny:
        train_runs = [("tiny", 128, False), ("tiny-llama", 128, True)]
        serve_runs, prompt_len, context = ["tiny-llama"], 16, 128
    else:
        train_runs = [("1.3b", 2048, False), ("7b", 2048, True)]
        serve_runs, prompt_len, context = ["1.3b", "7b"], 128, 2048
    device = jax.devices()[0]
    report = {
        "device": f"{jax.device_count()} x {device.device_kind} ({device.platform})",
        "jax": jax.__version__,
        "training": [],
        "serving": [],
    }
    print(f"# {report['device']}, jax {jax.__version__}", flush=True)
    for preset, seq, remat in train_runs:
        figure = train_figures(preset, seq, args.steps, dtype, remat)
        report["training"].append(figure)
        print(json.dumps(figure), flush=True)
    for preset in serve_runs:
        for figure in serve_figures(
            preset, [1, 32], prompt_len, args.new_tokens if not args.tiny else 16, dtype, context
        ):
            report["serving"].append(figure)
            print(json.dumps(figure), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
