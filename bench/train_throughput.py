"""Training throughput: the full trainer against a bare jitted train step of the same model, in one run.

    PYTHONPATH=.:containers/jax-llm .venv/bin/python bench/train_throughput.py --preset tiny --seq-len 128 \
        --batch-size 16 --steps 60

Prints tokens/s and MFU (ModelConfig.flops_per_token: 6N plus the attention term) of
  bare     the train step alone, on one batch already on the device, called back to back;
  trainer  `python -m jax_llm train` in this process on a SageMaker tree (stdlib text), steady-state
           intervals of its own log (data reading, host-to-device copies, logging included);
and the trainer's overhead = bare tokens/s / trainer tokens/s - 1, each the best of equally long intervals. MFU is against the peak matmul rate
measured on the same device in the same run (f32 on CPU, bf16 on GPU), and on GPU also against the
datasheet peak.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from jax_llm import sharding, train
from jax_llm.hyperparameters import TrainConfig
from jax_llm.metrics import parse_metrics
from jax_llm.model_config import ModelConfig
from jax_llm.optimizer import make_optimizer
from jax_llm.peak_flops import measure_matmul_peak, table_peak
from jax_llm.train_step import create_train_state, make_train_step
from local_mode.demo import build_corpus
from local_mode.tree import lay_out_training_tree


def bare_tokens_per_sec(config: TrainConfig, model_config: ModelConfig, blocks: int, block_steps: int) -> float:
    """The jitted step alone (no data loading, logging or checkpoints): the best of `blocks` timed blocks."""
    mesh = sharding.make_mesh()
    batch_sharding = sharding.batch_sharding(mesh)
    state = create_train_state(model_config, make_optimizer(config), config.seed, mesh, config.fsdp)
    rows = np.random.default_rng(0).integers(0, model_config.vocab_size, (config.batch_size, config.seq_len + 1))
    batch = sharding.global_batch(rows.astype(np.int32), batch_sharding, config.batch_size)
    step = make_train_step(state, config.grad_accum_steps, batch_sharding)
    for _ in range(3):  # compile and warm up
        state.state, loss = step(state.state, batch)
    loss.block_until_ready()
    best = 0.0
    for _ in range(blocks):
        start = time.perf_counter()
        for _ in range(block_steps):
            state.state, loss = step(state.state, batch)
        loss.block_until_ready()
        best = max(best, block_steps * config.batch_size * config.seq_len / (time.perf_counter() - start))
    return best


def trainer_tokens_per_sec(hyperparameters: dict, log_every: int) -> tuple[float, ModelConfig]:
    """Runs the real trainer; the best of its logged intervals after the first (warm-up) one."""
    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    build_corpus(work / "corpus", max_bytes=1_000_000)  # stdlib sources as text, as the local-mode demo uses
    root = lay_out_training_tree(work / "opt-ml", hyperparameters=hyperparameters,
                                 channels={"train": work / "corpus"}).root
    captured = io.StringIO()

    class Tee(io.TextIOBase):
        def write(self, text):
            captured.write(text)
            return sys.__stdout__.write(text)

    with contextlib.redirect_stdout(Tee()):
        with _base_dir(root):
            code = train.main([])
    if code != 0:
        raise SystemExit(f"trainer failed ({code}): {(root / 'output' / 'failure').read_text()[:1000]}")
    intervals = parse_metrics(captured.getvalue())["tokens_per_sec"][1:]
    exported = json.loads((root / "model" / "config.json").read_text())["model"]
    return max(intervals), ModelConfig(**exported)


@contextlib.contextmanager
def _base_dir(root: Path):
    import os

    previous = os.environ.get("SAGEMAKER_BASE_DIR")
    os.environ["SAGEMAKER_BASE_DIR"] = str(root)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("SAGEMAKER_BASE_DIR")
        else:
            os.environ["SAGEMAKER_BASE_DIR"] = previous


def main() -> None:
    """Parses arguments, measures peak, trainer and bare step, prints a table and one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--grad-accum-steps", type=int, default=1)
    parser.add_argument("--steps", type=int, default=60, help="trainer steps (5 logged intervals); bare runs as many")
    parser.add_argument("--vocab-size", type=int, default=1024)
    parser.add_argument("--fsdp", action="store_true")
    args = parser.parse_args()

    log_every = max(1, args.steps // 5)
    hyperparameters = {  # typed values: the local-mode tree JSON-encodes them, as the SageMaker SDK does
        "preset": args.preset, "max_steps": args.steps, "batch_size": args.batch_size, "seq_len": args.seq_len,
        "grad_accum_steps": args.grad_accum_steps, "warmup_steps": 1, "vocab_size": args.vocab_size,
        "log_every": log_every, "eval_every": 0, "eval_batches": 1, "checkpoint_every": 0, "fsdp": args.fsdp,
    }
    device = jax.devices()[0]
    on_gpu = device.platform == "gpu"
    peak_dtype = "bfloat16" if on_gpu else "float32"
    peak = measure_matmul_peak(peak_dtype, n=8192 if on_gpu else 1024)

    trainer_tps, model_config = trainer_tokens_per_sec(hyperparameters, log_every)
    config = TrainConfig(preset=args.preset, max_steps=args.steps, batch_size=args.batch_size, seq_len=args.seq_len,
                         grad_accum_steps=args.grad_accum_steps, warmup_steps=1, fsdp=args.fsdp)
    # Bare blocks as long as the trainer's log intervals, before and after it: the same statistic (the
    # best interval) on both sides, which neighbours' load on a shared machine disturbs the least.
    bare_tps = max(bare_tokens_per_sec(config, model_config, 3, log_every) for _ in range(2))

    flops_per_token = model_config.flops_per_token(args.seq_len)
    n = jax.device_count()
    datasheet = table_peak(device.device_kind, model_config.compute_dtype)
    rows = [("bare jitted step", bare_tps), ("trainer", trainer_tps)]
    print(f"\n{device.device_kind} x{n}, {args.preset} ({model_config.num_params() / 1e6:.2f}M params, "
          f"{model_config.compute_dtype}), batch {args.batch_size} x {args.seq_len}; measured {peak_dtype} matmul peak "
          f"{peak / 1e12:.3f} TFLOP/s per device" + (f", datasheet {datasheet / 1e12:.0f}" if datasheet else ""))
    for name, tps in rows:
        mfu = tps * flops_per_token / (peak * n)
        extra = f"  MFU vs datasheet {tps * flops_per_token / (datasheet * n):.3f}" if datasheet else ""
        print(f"  {name:<17} {tps:12.1f} tokens/s  MFU vs measured peak {mfu:.3f}{extra}")
    overhead = bare_tps / trainer_tps - 1
    print(f"  trainer overhead  {100 * overhead:+.1f}% (goal on CPU: under 5%)")
    print(json.dumps({"device": device.device_kind, "devices": n, "preset": args.preset, "seq_len": args.seq_len,
                      "batch_size": args.batch_size, "peak_flops": peak, "bare_tokens_per_sec": bare_tps,
                      "trainer_tokens_per_sec": trainer_tps, "overhead": overhead}))


if __name__ == "__main__":
    main()
