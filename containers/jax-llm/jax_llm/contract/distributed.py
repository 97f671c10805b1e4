"""Multi-host JAX on SageMaker: `jax.distributed` set up from `resourceconfig.json`, one process per host.

SageMaker gives every host the same `hosts` list (sorted as strings: algo-1, algo-10, algo-2) and its
own `current_host`. The first host runs the coordinator. Host names may not resolve in DNS for a
while after the container starts, so the coordinator's name is retried before JAX gives up on it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import sys
import time
from pathlib import Path

COORDINATOR_PORT = 7777  # SageMaker reserves no port; any free one on the first host works
DNS_RETRY_SECONDS = 300.0


@dataclasses.dataclass(frozen=True)
class ClusterSpec:
    """This process's place among the job's hosts."""

    hosts: tuple[str, ...]
    current_host: str
    network_interface: str | None

    @property
    def process_count(self) -> int:
        """How many hosts (one JAX process each)."""
        return len(self.hosts)

    @property
    def process_id(self) -> int:
        """This host's index in `hosts`: JAX's process id."""
        return self.hosts.index(self.current_host)


class ResourceConfigError(ValueError):
    """`resourceconfig.json` cannot be read as SageMaker writes it; the message names the file."""


def read_cluster_spec(resource_config: Path) -> ClusterSpec:
    """Reads `resourceconfig.json`; no file (a plain local run) means one host."""
    path = Path(resource_config)
    if not path.exists():
        return ClusterSpec(hosts=("algo-1",), current_host="algo-1", network_interface=None)
    try:
        config = json.loads(path.read_text())
    except ValueError as err:
        raise ResourceConfigError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(config, dict) or not isinstance(config.get("hosts"), list) or not config["hosts"] \
            or not isinstance(config.get("current_host"), str):
        raise ResourceConfigError(f"{path} must hold an object with a non-empty list `hosts` and a string "
                                  f"`current_host`, got {json.dumps(config)[:200]}")
    hosts = tuple(config["hosts"])  # kept in SageMaker's order: every host must agree on process ids
    if config["current_host"] not in hosts:
        raise ResourceConfigError(
            f"{path}: current_host {config['current_host']!r} is not in hosts {list(hosts)}")
    return ClusterSpec(hosts, config["current_host"], config.get("network_interface_name"))


def _wait_for_dns(host: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.getaddrinfo(host, None)
            return
        except socket.gaierror as err:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"coordinator host {host!r} did not resolve within {timeout_s:.0f} s: {err}") from err
            print(f"waiting for {host!r} to resolve: {err}", file=sys.stderr, flush=True)
            time.sleep(2.0)


def initialize(spec: ClusterSpec, environ: dict | None = None) -> None:
    """Starts `jax.distributed` when there is more than one host; a no-op on one host.

    Must run before anything touches a JAX device. `JAX_COORDINATOR_ADDRESS` overrides hosts[0]:port
    (two processes on one machine can then stand in for two hosts).
    """
    import jax

    environ = os.environ if environ is None else environ
    if spec.process_count == 1:
        return
    if spec.network_interface:
        # NCCL otherwise may pick a bridge or loopback interface that the other hosts cannot reach.
        environ.setdefault("NCCL_SOCKET_IFNAME", spec.network_interface)
    # CPU collectives (the CPU backend, tests) need gloo across processes; GPU collectives use NCCL.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    coordinator = environ.get("JAX_COORDINATOR_ADDRESS")
    if not coordinator:
        _wait_for_dns(spec.hosts[0], DNS_RETRY_SECONDS)
        coordinator = f"{spec.hosts[0]}:{COORDINATOR_PORT}"
    jax.distributed.initialize(
        coordinator_address=coordinator,
        num_processes=spec.process_count,
        process_id=spec.process_id,
    )


def should_stop(step: int, sigterm_seen: bool) -> bool:
    """True when the run must checkpoint and stop before `step`, on every process at the same step.

    One process: our own SIGTERM handler's flag. Several: jax.distributed installs its preemption
    notifier, which catches SIGTERM on any host, tells the others through the coordinator and agrees
    on a step for all; it must be asked at every step.
    """
    import jax
    from jax.experimental import multihost_utils

    if jax.process_count() == 1:
        return sigterm_seen
    return multihost_utils.reached_preemption_sync_point(step)
