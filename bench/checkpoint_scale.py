"""Checkpoint cost against the number of hosts: save and restore time and bytes per host, 1, 2 and 4 hosts.

    PYTHONPATH=.:containers/jax-llm .venv/bin/python bench/checkpoint_scale.py --megabytes 256 --hosts 1 2 4

Each host is a local process (jax.distributed over gloo, `--devices-per-host` CPU devices each, as the
multi-host tests run them) with its own checkpoint directory. The state is `--megabytes` of float32
matrices shaped like a transformer's weights and Adam moments, FSDP-sharded over every device (the
real `Checkpointer` and its per-host parts; nothing model-specific is involved). Per host count and
repeat: `save` (blocks copied to host memory, then written) timed to the end of the write, then the
union of all hosts' parts is linked into every host's directory (what SageMaker's download of the S3
prefix does; not timed) and `restore_latest` timed. Prints per host count the median seconds and bytes
per host and their ratio to 1 host, measured in the same run. All hosts share this machine's disk and
cores, so the time ratios say how the work per host grows, not what separate machines would do.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COLUMNS = 1024  # every matrix is [rows, 1024] float32: 4 KiB a row


def worker(args) -> None:
    """One host: builds the state, saves and restores it `--repeats` times, prints one JSON line."""
    import jax
    import numpy as np
    from jax.experimental import multihost_utils
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    from jax_llm.training.checkpointing import Checkpointer

    (hosts,) = args.hosts
    if hosts > 1:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(args.coordinator, hosts, args.process)
    mesh = Mesh(np.array(jax.devices()), ("fsdp",))
    rows = NamedSharding(mesh, P("fsdp"))
    total_rows = args.megabytes * 2**20 // (4 * COLUMNS)
    # Three leaves per "weight" (parameter, Adam mu, Adam nu), eight weights of falling size.
    # Rows a multiple of 64, so that every host count up to 32 devices shards the same state.
    sizes = [total_rows // 3 * w // 36 // 64 * 64 for w in (8, 8, 6, 5, 4, 3, 1, 1)]

    def block(index, value):
        return np.full((index[0].stop - index[0].start, COLUMNS), value, np.float32)

    state = {
        f"{kind}.w{i}": jax.make_array_from_callback((r, COLUMNS), rows, lambda idx, i=i: block(idx, i))
        for i, r in enumerate(sizes)
        if r
        for kind in ("param", "mu", "nu")
    }
    abstract = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=v.sharding) for k, v in state.items()}
    root = Path(args.directory)
    mine = root / f"host-{args.process}"
    results = []
    for repeat in range(args.repeats):
        step = repeat + 1
        checkpointer = Checkpointer(mine, keep=1)
        multihost_utils.sync_global_devices(f"save-{step}")
        started = time.perf_counter()
        checkpointer.save(step, state, {"repeat": repeat})
        checkpointer.wait()
        save_s = time.perf_counter() - started
        written = checkpointer.last_save_bytes
        checkpointer.close()
        multihost_utils.sync_global_devices(f"saved-{step}")
        for other in root.glob("host-*"):  # the S3 prefix's download: every host's part in every tree
            for path in (other / "steps" / str(step)).glob("part-*"):
                target = mine / "steps" / str(step) / path.name
                if not target.exists():
                    os.link(path, target)
        multihost_utils.sync_global_devices(f"linked-{step}")
        started = time.perf_counter()
        restored = Checkpointer(mine, keep=1).restore_latest(abstract)
        jax.block_until_ready(restored.state)
        restore_s = time.perf_counter() - started
        assert restored.step == step
        results.append({"save_s": save_s, "restore_s": restore_s, "bytes": written})
        del restored
    total = sum(v.nbytes for v in state.values())
    result = {"process": args.process, "total_bytes": total, "runs": results}
    print("RESULT " + json.dumps(result), flush=True)


def run_hosts(n: int, args) -> list[dict]:
    """Starts `n` worker processes on a fresh directory; returns their results."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    directory = tempfile.mkdtemp(prefix=f"bench-ckpt-{n}-")
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={args.devices_per_host}",
    }
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--worker",
                "--process",
                str(i),
                "--hosts",
                str(n),
                "--coordinator",
                f"127.0.0.1:{port}",
                "--directory",
                directory,
                "--megabytes",
                str(args.megabytes),
                "--repeats",
                str(args.repeats),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(n)
    ]
    outputs = [p.communicate(timeout=1800)[0] for p in processes]
    results = []
    for output, process in zip(outputs, processes):
        lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
        if process.returncode or not lines:
            raise SystemExit(f"a host failed ({process.returncode}):\n{output[-3000:]}")
        results.append(json.loads(lines[-1][len("RESULT ") :]))
    subprocess.run(["rm", "-rf", directory], check=False)
    return results


def main() -> None:
    """Measures every host count in one run and prints a table with ratios to the first, and JSON."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hosts", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--megabytes", type=int, default=256, help="the whole state (parameters + moments)")
    parser.add_argument("--devices-per-host", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--process", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--coordinator", default="", help=argparse.SUPPRESS)
    parser.add_argument("--directory", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    rows = []
    for n in args.hosts:
        results = run_hosts(n, args)

        def per_host(key, results=results):
            return statistics.median(max(r["runs"][k][key] for r in results) for k in range(args.repeats))

        rows.append(
            {
                "hosts": n,
                "total_bytes": results[0]["total_bytes"],
                "bytes_per_host_max": max(r["runs"][-1]["bytes"] for r in results),
                "bytes_per_host_min": min(r["runs"][-1]["bytes"] for r in results),
                "save_s": per_host("save_s"),
                "restore_s": per_host("restore_s"),
            }
        )
    base = rows[0]
    print(
        f"state {base['total_bytes'] / 2**20:.0f} MiB, {args.devices_per_host} CPU devices per host, "
        f"median of {args.repeats} (slowest host of each repeat)"
    )
    print(
        f"{'hosts':>5} {'MiB/host (max)':>15} {'x 1 host':>9} {'save s':>8} {'x 1 host':>9} "
        f"{'restore s':>10} {'x 1 host':>9}"
    )
    for row in rows:
        print(
            f"{row['hosts']:>5} {row['bytes_per_host_max'] / 2**20:>15.1f} "
            f"{row['bytes_per_host_max'] / base['bytes_per_host_max']:>9.2f} {row['save_s']:>8.2f} "
            f"{row['save_s'] / base['save_s']:>9.2f} {row['restore_s']:>10.2f} "
            f"{row['restore_s'] / base['restore_s']:>9.2f}"
        )
    print(json.dumps({"devices_per_host": args.devices_per_host, "rows": rows}))


if __name__ == "__main__":
    main()
