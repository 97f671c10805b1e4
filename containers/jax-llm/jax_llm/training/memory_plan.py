"""`python -m jax_llm plan`: per-GPU memory of a training job and a server, before any job starts.

The real train step (`train_step.make_train_step`) is lowered from `jax.ShapeDtypeStruct`s with their
shardings (`train_step.plan_train_state`) for a mesh of as many devices as the cluster has GPUs, and
compiled; nothing is allocated, so it runs on a CPU: JAX is started with that many host devices
(`--xla_force_host_platform_device_count`). `compiled.memory_analysis()` gives per-device argument
bytes (parameters + AdamW state, exactly 12 bytes per parameter / fsdp) and temporaries (gradients,
gathered weights, activations). XLA's CPU compiler is not its GPU compiler (no cuDNN attention, other
fusion and scheduling): the temporaries are an estimate until a GPU calibrates them.

    python -m jax_llm plan --preset 7b --instance-type ml.p4de.24xlarge --instance-count 4 \\
        --batch-size 512 --seq-len 2048 [--grad-accum-steps 16] [--remat] [--mesh auto] [--slots 32]
    python -m jax_llm plan --write-table    # regenerates contract/memory_plan.json (minutes)

The table is what `cdk synth` reads (`contract/memory_plan.py`): per preset and remat, the temporaries
fitted as a + c1 m T + c2 m T^2 from three compiles on an 8-device fsdp mesh (m sequences of T tokens
per device), so any batch and sequence length can be checked without JAX.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

FIT_FSDP = 8  # the table's fits are compiled on a 1 x 8 mesh (one 8-GPU host's FSDP group)
FIT_SEQ = 1024  # at m = FIT_ROWS[0] and [1] sequences of FIT_SEQ tokens per device, and [0] of 2 x FIT_SEQ
# XLA's temporaries grow linearly in m from about 4 sequences per device; below that a fixed-size buffer
# dominates (7b, remat, 1x8 mesh, 1024 tokens: 6.25, 6.45, 9.74, 15.48, 26.98 GiB at m = 1, 2, 4, 8, 16),
# so a fit through m = 1 and 2 underestimated m = 16 by half. Fitted through 4 and 8, it overestimates
# m < 4 (safe) and is within a few percent from 4 up.
FIT_ROWS = (4, 8)
TABLE_PRESETS = ("tiny-llama", "125m", "350m", "1.3b", "3b", "7b", "7b-gqa", "13b")


def _start_jax(devices: int) -> None:
    """JAX on the CPU with `devices` host devices; must run before JAX is first imported."""
    if "jax" in sys.modules:
        import jax

        if jax.device_count() < devices:
            raise RuntimeError(
                f"JAX already started with {jax.device_count()} devices; the plan needs "
                f"{devices}: run `python -m jax_llm plan` in a fresh process"
            )
        return
    flags = os.environ.get("XLA_FLAGS", "")
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={devices}".strip()
    os.environ["JAX_PLATFORMS"] = "cpu"


def compile_train_step(
    preset: str,
    mesh_shape: tuple[int, int],
    rows_per_device: int,
    seq_len: int,
    remat: bool,
    fsdp: bool = True,
    grad_accum_steps: int = 1,
) -> dict:
    """XLA's per-device memory analysis of the train step (bf16 compute, fp32 master weights and AdamW).

    Returns bytes: arguments, outputs, aliased (donated state), temporaries; and compile seconds.
    """
    import jax
    import jax.numpy as jnp

    from jax_llm.contract.hyperparameters import TrainConfig
    from jax_llm.model.config import ModelConfig
    from jax_llm.training import sharding
    from jax_llm.training.optimizer import make_optimizer
    from jax_llm.training.train_step import make_train_step, plan_train_state

    n_devices = mesh_shape[0] * mesh_shape[1]
    mesh = sharding.make_mesh(mesh_shape, jax.devices()[:n_devices])
    batch = rows_per_device * n_devices * grad_accum_steps
    model = ModelConfig.preset(preset, max_seq_len=seq_len, compute_dtype="bfloat16", remat=remat)
    train = TrainConfig(preset=preset, batch_size=batch, seq_len=seq_len, grad_accum_steps=grad_accum_steps)
    started = time.perf_counter()
    state = plan_train_state(model, make_optimizer(train), 0, mesh, fsdp)
    batch_sharding = sharding.batch_sharding(mesh)
    tokens = jax.ShapeDtypeStruct((batch, seq_len + 1), jnp.int32, sharding=batch_sharding)
    lowered = make_train_step(state, grad_accum_steps, batch_sharding).lower(state.state, tokens)
    lowered_at = time.perf_counter()
    stats = lowered.compile().memory_analysis()
    return {
        "arguments": stats.argument_size_in_bytes,
        "outputs": stats.output_size_in_bytes,
        "aliased": stats.alias_size_in_bytes,
        "temporaries": stats.temp_size_in_bytes,
        "lower_s": round(lowered_at - started, 1),
        "compile_s": round(time.perf_counter() - lowered_at, 1),
        "num_params": model.num_params(),
    }


def fit_row(preset: str, remat: bool) -> dict:
    """Three compiles on a 1 x FIT_FSDP mesh -> {a, c1, c2} of the temporaries net of the gradients."""
    m0, m1 = FIT_ROWS
    t0 = FIT_SEQ
    points = {}
    for m, t in ((m0, t0), (m1, t0), (m0, 2 * t0)):
        points[f"{m}x{t}"] = compile_train_step(preset, (1, FIT_FSDP), m, t, remat)["temporaries"]
    base, more_rows, longer = points[f"{m0}x{t0}"], points[f"{m1}x{t0}"], points[f"{m0}x{2 * t0}"]
    per_row = (more_rows - base) / (m1 - m0)  # c1 t0 + c2 t0^2
    per_row_longer = (longer - base) / m0 + per_row  # c1 2 t0 + 4 c2 t0^2, a being the same at both lengths
    c2 = (per_row_longer - 2 * per_row) / (2 * t0**2)
    c1 = (per_row - c2 * t0**2) / t0
    # fp32 gradient shards are counted apart: they scale as 1 / fsdp.
    gradients = 4 * compile_num_params(preset) // FIT_FSDP
    a = base - gradients - m0 * per_row
    return {"a": round(a), "c1": c1, "c2": c2, "measured_temporaries": points}


def compile_num_params(preset: str) -> int:
    from jax_llm.model.config import ModelConfig

    return ModelConfig.preset(preset).num_params()


def preset_facts(preset: str) -> dict:
    """A table row's sizes: what training's and serving's arithmetic need besides the fitted temporaries."""
    from jax_llm.model.config import ModelConfig
    from jax_llm.serving.engine.tensor_parallel import served_model

    c = ModelConfig.preset(preset)
    served = served_model(c)
    return {
        "num_params": c.num_params(),
        "whole_params": served.whole_params,  # what tensor parallelism leaves whole on every GPU
        "n_layers": c.n_layers,
        "n_heads": c.n_heads,
        "kv_heads": c.kv_heads,
        "head_dim": c.head_dim,
        "vocab_size": c.vocab_size,
        "d_ff": c.d_ff,
        "max_seq_len": c.max_seq_len,
    }


def write_table(presets=TABLE_PRESETS) -> dict:
    """Recomputes the rows of `presets` and writes contract/memory_plan.json (other rows kept)."""
    _start_jax(FIT_FSDP)
    import jax

    from jax_llm.contract.memory_plan import TABLE_FILE

    rows = json.loads(TABLE_FILE.read_text())["presets"] if TABLE_FILE.exists() else {}
    about = (
        "written by `python -m jax_llm plan --write-table`: training temporaries per GPU net of "
        "gradients, a + c1 m T + c2 m T^2 bytes for m sequences of T tokens per GPU, fitted to XLA's "
        "memory analysis "
        f"of the train step (bf16 compute, fp32 AdamW) on a 1x{FIT_FSDP} fsdp mesh of CPU devices, "
        f"jax {jax.__version__}"
    )
    data = {}
    for preset in presets:  # the file is rewritten after each row: a long run keeps what it finished
        started = time.perf_counter()
        rows[preset] = {
            **preset_facts(preset),
            "training": {"remat": fit_row(preset, True), "no_remat": fit_row(preset, False)},
        }
        print(f"{preset}: {time.perf_counter() - started:.0f} s", flush=True)
        data = {
            "about": about,
            "fit": {"fsdp": FIT_FSDP, "seq_len": FIT_SEQ},
            "presets": {p: rows[p] for p in TABLE_PRESETS if p in rows},
        }
        TABLE_FILE.write_text(json.dumps(data, indent=1) + "\n")
    return data


def _print_plan(args) -> None:
    from jax_llm.contract.hyperparameters import mesh_shape
    from jax_llm.contract.instances import INSTANCE_TYPES
    from jax_llm.contract.memory_plan import (
        DoesNotFit,
        ServedModel,
        gib,
        grad_accum_that_fits,
        largest_rows_per_device,
        plan_serving,
        table,
        training_need,
        usable_bytes,
    )

    instance = INSTANCE_TYPES[args.instance_type]
    data, fsdp = mesh_shape(args.mesh, args.instance_count, instance.gpus)
    devices = data * fsdp
    if args.batch_size % (args.grad_accum_steps * devices):
        raise SystemExit(
            f"--batch-size {args.batch_size} / --grad-accum-steps {args.grad_accum_steps} must "
            f"be a multiple of the {devices} GPUs"
        )
    rows = args.batch_size // args.grad_accum_steps // devices
    _start_jax(devices)
    usable = usable_bytes(instance)
    print(
        f"{args.preset} on {args.instance_count} x {instance.name} ({devices} x {instance.gpu.name}, "
        f"{gib(usable)} usable each), mesh data x fsdp = {data}x{fsdp}, fsdp={not args.no_fsdp}, "
        f"remat={args.remat}: {rows} sequence(s) of {args.seq_len} tokens per GPU per micro-batch"
    )
    xla = compile_train_step(
        args.preset, (data, fsdp), rows, args.seq_len, args.remat, not args.no_fsdp, args.grad_accum_steps
    )
    n, f = xla["num_params"], (fsdp if not args.no_fsdp else 1)
    gradients = 4 * n // f
    peak = xla["arguments"] + xla["outputs"] - xla["aliased"] + xla["temporaries"]
    print(f"XLA (compiled in {xla['compile_s']} s, lowered in {xla['lower_s']} s), per GPU:")
    print(f"  parameters (fp32)          {gib(4 * n // f):>10}")
    print(
        f"  AdamW moments (fp32)       {gib(xla['arguments'] - 4 * n // f):>10}  "
        f"(arguments {gib(xla['arguments'])}, batch included)"
    )
    print(f"  gradients (fp32)           {gib(gradients):>10}")
    print(f"  activations, temporaries   {gib(xla['temporaries'] - gradients):>10}")
    print(
        f"  peak                       {gib(peak):>10}  {'fits' if peak <= usable else 'DOES NOT FIT'} "
        f"in {gib(usable)}"
    )
    table_need = training_need(args.preset, args.seq_len, args.remat, fsdp, rows, not args.no_fsdp)
    print(f"  table's estimate           {gib(table_need.total):>10}  ({table_need.describe()})")
    most = largest_rows_per_device(args.preset, args.seq_len, args.remat, fsdp, instance, not args.no_fsdp)
    accum = grad_accum_that_fits(args.batch_size, devices, most)
    print(
        f"largest micro-batch that fits (table): {most} sequence(s) per GPU = {most * devices} per "
        f"micro-batch; --batch-size {args.batch_size} fits with --grad-accum-steps {accum or 'none'}"
    )
    context = args.context or args.seq_len
    served = ServedModel.from_table(args.preset) if args.preset in table()["presets"] else None
    try:
        split = served and plan_serving(served, context, args.slots, instance.gpus, usable)
        said = split.describe() if split else f"no row for {args.preset} in the table"
    except DoesNotFit as error:
        said = f"DOES NOT FIT: {error}"
    print(
        f"serving on {instance.name}, {args.slots} slots x {context} tokens (bf16), the server's split: {said}"
    )


DOC_TRAINING_TYPES = (
    "ml.p4de.24xlarge",
    "ml.p5.48xlarge",
    "ml.p5e.48xlarge",
    "ml.g5.48xlarge",
    "ml.g6e.48xlarge",
)
DOC_SERVING_TYPES = (
    "ml.g5.xlarge",
    "ml.g5.12xlarge",
    "ml.g5.48xlarge",
    "ml.g6e.2xlarge",
    "ml.g6e.12xlarge",
    "ml.p4de.24xlarge",
    "ml.p5.48xlarge",
    "ml.p5e.48xlarge",
)


def _table_head(instance_types) -> list[str]:
    """A Markdown table's header and rule: one row per preset, one column per instance type."""
    return ["| preset | " + " | ".join(instance_types) + " |", "|---|" + "---|" * len(instance_types)]


def markdown_tables(
    presets=("1.3b", "7b", "7b-gqa", "13b"), hosts: int = 4, seq_len: int = 2048, slots: int = 32
) -> str:
    """docs/scale.md's plan tables, from the checked-in table alone (no JAX)."""
    from jax_llm.contract.hyperparameters import default_mesh_shape
    from jax_llm.contract.instances import INSTANCE_TYPES
    from jax_llm.contract.memory_plan import (
        DoesNotFit,
        ServedModel,
        gib,
        largest_rows_per_device,
        plan_serving,
        training_need,
        usable_bytes,
    )

    lines = [
        f"Training, {hosts} hosts, mesh auto, fsdp=true, remat=true, {seq_len}-token sequences: per "
        "GPU, parameters + AdamW + gradients (fp32), and the most sequences per GPU per micro-batch that fit "
        "(activations from XLA's CPU analysis).",
        "",
        *_table_head(DOC_TRAINING_TYPES),
    ]
    for preset in presets:
        cells = []
        for name in DOC_TRAINING_TYPES:
            instance = INSTANCE_TYPES[name]
            fsdp = default_mesh_shape(hosts, instance.gpus)[1]
            state = training_need(preset, seq_len, True, fsdp, 0)
            most = largest_rows_per_device(preset, seq_len, True, fsdp, instance)
            cells.append(
                f"{gib(state.parameters + state.optimizer + state.gradients)}; "
                + (f"{most} seq/GPU" if most else "**does not fit**")
            )
        lines.append(f"| {preset} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Serving, {slots} decode slots x {seq_len} tokens, weights and KV cache in bf16: the GPUs the server "
        "splits the model over (the fewest that hold it: tensor parallelism) and what each then holds, "
        "or the most slots that fit when fewer than asked.",
        "",
        *_table_head(DOC_SERVING_TYPES),
    ]
    for preset in presets:
        served = ServedModel.from_table(preset)
        cells = []
        for name in DOC_SERVING_TYPES:
            instance = INSTANCE_TYPES[name]
            try:
                split = plan_serving(served, seq_len, slots, instance.gpus, usable_bytes(instance))
            except DoesNotFit:
                cells.append("**does not fit**")
                continue
            short = "" if split.slots == slots else f", **{split.slots} slots**"
            gpus = f"{split.shards} GPU" + ("s" if split.shards > 1 else "")
            cells.append(f"{gpus}: {gib(split.need.total)}{short}")
        lines.append(f"| {preset} | " + " | ".join(cells) + " |")
    usable_row = " | ".join(gib(usable_bytes(INSTANCE_TYPES[n])) for n in DOC_SERVING_TYPES)
    lines.append(f"| usable per GPU | {usable_row} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m jax_llm plan", description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="7b")
    parser.add_argument("--instance-type", default="ml.p4de.24xlarge")
    parser.add_argument("--instance-count", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--grad-accum-steps", type=int, default=1)
    parser.add_argument("--remat", action="store_true")
    parser.add_argument("--no-fsdp", action="store_true")
    parser.add_argument("--mesh", default="auto")
    parser.add_argument("--slots", type=int, default=32, help="serving: decode slots")
    parser.add_argument("--context", type=int, default=0, help="serving: context tokens (default --seq-len)")
    parser.add_argument("--write-table", action="store_true", help="regenerate contract/memory_plan.json")
    parser.add_argument("--table-presets", default=",".join(TABLE_PRESETS))
    parser.add_argument("--markdown", action="store_true", help="print docs/scale.md's plan tables")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown_tables(), end="")
        return 0
    if args.write_table:
        write_table(tuple(args.table_presets.split(",")))
        return 0
    _print_plan(args)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
