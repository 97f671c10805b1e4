"""Training throughput: the trainer's loop against a bare jitted train step of the same model, in one run.

    PYTHONPATH=.:containers/jax-llm .venv/bin/python bench/train_throughput.py --preset tiny --seq-len 128 \
        --batch-size 16

Sets up the real `jax_llm.training.trainer.Trainer` on a SageMaker tree (stdlib text through the local-mode
tree builder), then alternates, `--blocks` times, equally long blocks of
  bare     the trainer's own compiled step on one batch already on the device, back to back;
  trainer  the trainer's loop: `Trainer.step` (stop check, reading this step's batch on the host,
           placing it, dispatching) for each step, then `Trainer.log_interval` (device wait, log line);
Interleaving block by block matters on a shared machine, where neighbours swing throughput by tens
of percent within seconds. Prints tokens/s and MFU (6N plus the attention term, over the matmul peak
measured on the same device in the same run; on GPU also over the datasheet peak) as the median of
the blocks, and the trainer's overhead as the median of the paired block ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import jax

from jax_llm.contract.hyperparameters import parse_hyperparameters
from jax_llm.contract.paths import BASE_DIR_VARIABLE, TRAIN_CHANNEL, SageMakerPaths
from jax_llm.training.interruption import StopFlag
from jax_llm.training.peak_flops import measure_matmul_peak, table_peak
from jax_llm.training.trainer import Trainer
from local_mode.demo import build_corpus
from local_mode.tree import lay_out_training_tree


def make_trainer(hyperparameters: dict) -> Trainer:
    """The real trainer on a fresh local SageMaker tree (data loaded, state initialised, step compiled)."""
    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    build_corpus(work / "corpus", max_bytes=1_000_000)  # stdlib sources as text, as the local-mode demo uses
    paths = lay_out_training_tree(
        work / "opt-ml", hyperparameters=hyperparameters, channels={TRAIN_CHANNEL: work / "corpus"}
    )
    os.environ[BASE_DIR_VARIABLE] = str(paths.root)
    config = parse_hyperparameters(json.loads(paths.hyperparameters.read_text()))
    return Trainer(config, SageMakerPaths(paths.root), StopFlag(), work / "data")


def time_bare(trainer: Trainer, batch, steps: int) -> float:
    """Seconds for `steps` calls of the compiled step on a fixed device batch, to the last result."""
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_state.state, loss = trainer.train_step(trainer.train_state.state, batch)
    loss.block_until_ready()
    return time.perf_counter() - start


def time_trainer(trainer: Trainer, first_step: int, steps: int) -> float:
    """Seconds for `steps` steps of the trainer's loop and its interval log line."""
    start = time.perf_counter()
    losses = [trainer.step(step) for step in range(first_step, first_step + steps)]
    with contextlib.redirect_stdout(io.StringIO()):
        trainer.log_interval(first_step + steps, losses, start, start)
    return time.perf_counter() - start


def main() -> None:
    """Parses arguments, measures the peak, alternates bare and trainer blocks, prints a table and JSON."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--grad-accum-steps", type=int, default=1)
    parser.add_argument("--vocab-size", type=int, default=1024)
    parser.add_argument("--fsdp", action="store_true")
    parser.add_argument("--block-steps", type=int, default=12, help="steps per block (its log_every)")
    parser.add_argument("--blocks", type=int, default=20, help="blocks of each kind, alternating")
    args = parser.parse_args()

    total_steps = 2 * (args.blocks + 1) * args.block_steps
    hyperparameters = {  # typed values: the local-mode tree JSON-encodes them, as the SageMaker SDK does
        "preset": args.preset,
        "max_steps": total_steps,
        "batch_size": args.batch_size,
        "seq_len": args.seq_len,
        "grad_accum_steps": args.grad_accum_steps,
        "warmup_steps": 1,
        "vocab_size": args.vocab_size,
        "log_every": args.block_steps,
        "eval_every": 0,
        "checkpoint_every": 0,
        "fsdp": args.fsdp,
    }
    device = jax.devices()[0]
    peak_dtype = "bfloat16" if device.platform == "gpu" else "float32"
    peak = measure_matmul_peak(peak_dtype, n=8192 if device.platform == "gpu" else 1024)

    with contextlib.redirect_stdout(io.StringIO()):
        trainer = make_trainer(hyperparameters)
    batch = trainer._batch(0)
    time_bare(trainer, batch, 2)  # warm-up: the first calls allocate
    step, bare_s, trainer_s = 0, [], []
    for _ in range(args.blocks):
        bare_s.append(time_bare(trainer, batch, args.block_steps))
        trainer_s.append(time_trainer(trainer, step, args.block_steps))
        step += args.block_steps
    trainer.close()

    tokens = args.block_steps * args.batch_size * args.seq_len
    bare_tps = statistics.median(tokens / s for s in bare_s)
    trainer_tps = statistics.median(tokens / s for s in trainer_s)
    overhead = statistics.median(t / b - 1 for b, t in zip(bare_s, trainer_s))
    model_config = trainer.model_config
    flops_per_token = model_config.flops_per_token(args.seq_len)
    n = jax.device_count()
    datasheet = table_peak(device.device_kind, model_config.compute_dtype)
    print(
        f"{device.device_kind} x{n}, {args.preset} ({model_config.num_params() / 1e6:.2f}M params, "
        f"{model_config.compute_dtype}), batch {args.batch_size} x {args.seq_len}; measured {peak_dtype} "
        f"matmul peak {peak / 1e12:.3f} TFLOP/s per device"
        + (f", datasheet {datasheet / 1e12:.0f}" if datasheet else "")
    )
    for name, tps in (("bare jitted step", bare_tps), ("trainer loop", trainer_tps)):
        extra = f"  MFU vs datasheet {tps * flops_per_token / (datasheet * n):.3f}" if datasheet else ""
        mfu = tps * flops_per_token / (peak * n)
        print(f"  {name:<17} {tps:12.1f} tokens/s  MFU vs measured peak {mfu:.3f}{extra}")
    print(
        f"  trainer overhead  {100 * overhead:+.1f}% (median of {args.blocks} paired blocks of "
        f"{args.block_steps} steps; goal on CPU: under 5%)"
    )
    print(
        json.dumps(
            {
                "device": device.device_kind,
                "devices": n,
                "preset": args.preset,
                "seq_len": args.seq_len,
                "batch_size": args.batch_size,
                "peak_flops": peak,
                "bare_tokens_per_sec": bare_tps,
                "trainer_tokens_per_sec": trainer_tps,
                "overhead": overhead,
                "bare_block_s": bare_s,
                "trainer_block_s": trainer_s,
            }
        )
    )


if __name__ == "__main__":
    main()
