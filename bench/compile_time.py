"""Compile time of the 7b train step against depth: scanned layers compile one block, unrolled ones all.

    PYTHONPATH=containers/jax-llm .venv/bin/python bench/compile_time.py [--devices 32 --mesh 4x8]

Lowers the real train step (`train_step.make_train_step`, remat, bf16 compute, FSDP) from
ShapeDtypeStructs for an abstract mesh of CPU host devices (nothing allocated) and compiles it, for the
7b shape at 8 and 32 layers, scanned (the preset) and unrolled. Prints wall and CPU seconds of lowering
and compiling; the ratio 32 / 8 layers is the figure (wall seconds swing on a shared machine).
"""

from __future__ import annotations

import argparse
import os
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=32)
    parser.add_argument("--mesh", default="4x8")
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--unrolled", action="store_true", help="also compile the unrolled variants")
    args = parser.parse_args()
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"
    os.environ["JAX_PLATFORMS"] = "cpu"
    import jax
    import jax.numpy as jnp

    from jax_llm.contract.hyperparameters import TrainConfig
    from jax_llm.model.config import ModelConfig
    from jax_llm.training import sharding
    from jax_llm.training.optimizer import make_optimizer
    from jax_llm.training.train_step import make_train_step, plan_train_state

    mesh = sharding.make_mesh(tuple(int(x) for x in args.mesh.split("x")))
    batch = sharding.batch_sharding(mesh)
    n = mesh.devices.size
    train = TrainConfig(preset="7b", batch_size=n, seq_len=args.seq_len)
    print(
        f"7b train step, mesh {args.mesh} of {n} CPU devices, 1 sequence of {args.seq_len} per device, "
        f"remat, bf16; jax {jax.__version__}"
    )
    variants = [(True, 8), (True, 32)] + ([(False, 8), (False, 32)] if args.unrolled else [])
    for scanned, layers in variants:
        model = ModelConfig.preset(
            "7b",
            max_seq_len=args.seq_len,
            compute_dtype="bfloat16",
            remat=True,
            scan_layers=scanned,
            n_layers=layers,
        )
        wall, cpu = time.perf_counter(), time.process_time()
        state = plan_train_state(model, make_optimizer(train), 0, mesh, True)
        tokens = jax.ShapeDtypeStruct((n, args.seq_len + 1), jnp.int32, sharding=batch)
        lowered = make_train_step(state, 1, batch).lower(state.state, tokens)
        lower_wall, lower_cpu = time.perf_counter() - wall, time.process_time() - cpu
        wall, cpu = time.perf_counter(), time.process_time()
        lowered.compile()
        print(
            f"  {'scanned ' if scanned else 'unrolled'} {layers:2d} layers: lower {lower_wall:5.1f} s wall "
            f"({lower_cpu:5.1f} s CPU), compile {time.perf_counter() - wall:5.1f} s wall "
            f"({time.process_time() - cpu:5.1f} s CPU)",
            flush=True,
        )


if __name__ == "__main__":
    main()
