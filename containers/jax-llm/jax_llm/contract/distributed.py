"""Multi-host JAX on SageMaker: `jax.distributed` joined from what the launcher gave, one process per host.

`join_cluster()` is the one call, for the built-in trainer and for a user's own script alike. It reads,
first match wins:
1. our script mode's `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID` (and `JAX_COORDINATOR_ADDRESS`);
2. SDK v3's driver (`sm_drivers`): `SM_HOST_COUNT`, `SM_CURRENT_HOST_RANK`, `SM_MASTER_ADDR`,
   `SM_MASTER_PORT`;
3. SageMaker's own `resourceconfig.json`: every host gets the same `hosts` list (sorted as strings: algo-1,
   algo-10, algo-2) and its own `current_host`; the first host runs the coordinator.
Host names may not resolve in DNS for a while after the container starts, so the coordinator's name is
retried before JAX gives up on it. `NCCL_SOCKET_IFNAME` is set to the launcher's interface only where this
machine has it: SDK v3's local mode names `ethwe`, which its containers do not have.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import sys
import time
from collections.abc import Mapping, MutableMapping
from pathlib import Path

from jax_llm.contract.paths import DEFAULT_ROOT, SageMakerPaths

COORDINATOR_PORT = 7777  # SageMaker reserves no port; any free one on the first host works (SDK v3's too)
DNS_RETRY_SECONDS = 300.0
NETWORK_INTERFACES = Path("/sys/class/net")  # one entry per interface this machine (container) has

# Our script mode's variables (what `jax.distributed.initialize()` reads by itself, too).
JAX_COORDINATOR = "JAX_COORDINATOR_ADDRESS"
JAX_NUM_PROCESSES = "JAX_NUM_PROCESSES"
JAX_PROCESS_ID = "JAX_PROCESS_ID"
# SDK v3's driver (sagemaker/train/container_drivers/scripts/environment.py, sagemaker 3.27).
SM_HOST_COUNT = "SM_HOST_COUNT"
SM_CURRENT_HOST_RANK = "SM_CURRENT_HOST_RANK"
SM_MASTER_ADDR = "SM_MASTER_ADDR"
SM_MASTER_PORT = "SM_MASTER_PORT"
SM_NETWORK_INTERFACE = "SM_NETWORK_INTERFACE_NAME"  # also the training toolkit's (v2 script mode)
NCCL_INTERFACE = "NCCL_SOCKET_IFNAME"


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
    if (
        not isinstance(config, dict)
        or not isinstance(config.get("hosts"), list)
        or not config["hosts"]
        or not isinstance(config.get("current_host"), str)
    ):
        raise ResourceConfigError(
            f"{path} must hold an object with a non-empty list `hosts` and a string "
            f"`current_host`, got {json.dumps(config)[:200]}"
        )
    hosts = tuple(config["hosts"])  # kept in SageMaker's order: every host must agree on process ids
    if config["current_host"] not in hosts:
        raise ResourceConfigError(
            f"{path}: current_host {config['current_host']!r} is not in hosts {list(hosts)}"
        )
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
                    f"coordinator host {host!r} did not resolve within {timeout_s:.0f} s: {err}"
                ) from err
            print(f"waiting for {host!r} to resolve: {err}", file=sys.stderr, flush=True)
            time.sleep(2.0)


@dataclasses.dataclass(frozen=True)
class JoinPlan:
    """How this process joins the job's cluster: `process_count` processes, coordinator at `coordinator`."""

    process_count: int
    process_id: int
    coordinator: str | None  # "host:port" of process 0; None on one process
    network_interface: str | None  # the launcher's interface for host-to-host traffic, if it named one
    source: str  # which launcher's variables said so (for the log line and errors)


class LauncherError(ValueError):
    """The launcher's variables contradict themselves; the message names the variable."""


def _integer(environ: Mapping[str, str], name: str) -> int:
    raw = environ.get(name, "")
    try:
        return int(raw)
    except ValueError:
        raise LauncherError(f"{name}={raw!r} is not an integer") from None


def plan_join(environ: Mapping[str, str] | None = None, resource_config: Path | None = None) -> JoinPlan:
    """Reads the launcher's variables (JAX_*, then SDK v3's SM_*, then resourceconfig.json; see above).

    `resource_config`: the file's path; by default under `SAGEMAKER_BASE_DIR` (else /opt/ml). No variables
    and no file: one process. `JAX_COORDINATOR_ADDRESS` overrides every launcher's coordinator.
    """
    environ = os.environ if environ is None else environ
    if resource_config is None:
        root = Path(environ.get("SAGEMAKER_BASE_DIR") or DEFAULT_ROOT)
        resource_config = SageMakerPaths(root).resource_config
    spec = read_cluster_spec(resource_config)
    interface = environ.get(SM_NETWORK_INTERFACE) or spec.network_interface
    override = environ.get(JAX_COORDINATOR) or None
    if environ.get(JAX_NUM_PROCESSES):
        source = "JAX_ variables"
        count, rank = _integer(environ, JAX_NUM_PROCESSES), _integer(environ, JAX_PROCESS_ID)
        coordinator = override or (f"{spec.hosts[0]}:{COORDINATOR_PORT}" if spec.process_count > 1 else None)
        if count > 1 and not coordinator:
            raise LauncherError(f"{JAX_NUM_PROCESSES}={count} but {JAX_COORDINATOR} is not set")
    elif environ.get(SM_HOST_COUNT):
        source = "SM_ variables"
        count, rank = _integer(environ, SM_HOST_COUNT), _integer(environ, SM_CURRENT_HOST_RANK)
        master = environ.get(SM_MASTER_ADDR)
        if count > 1 and not (override or master):
            raise LauncherError(f"{SM_HOST_COUNT}={count} but {SM_MASTER_ADDR} is not set")
        coordinator = override or f"{master}:{environ.get(SM_MASTER_PORT) or COORDINATOR_PORT}"
    else:
        count, rank, source = spec.process_count, spec.process_id, str(resource_config)
        coordinator = override or f"{spec.hosts[0]}:{COORDINATOR_PORT}"
    if count < 1 or not 0 <= rank < count:
        raise LauncherError(f"{source}: process id {rank} is not within {count} processes")
    return JoinPlan(count, rank, coordinator if count > 1 else None, interface, source)


def usable_interface(name: str | None, interfaces: Path = NETWORK_INTERFACES) -> bool:
    """Whether this machine has the network interface `name` (NCCL fails on one it does not have)."""
    return bool(name) and "/" not in name and (interfaces / name).exists()


def nccl_environment(
    plan: JoinPlan, environ: Mapping[str, str], interfaces: Path = NETWORK_INTERFACES
) -> dict[str, str]:
    """`NCCL_SOCKET_IFNAME` for the launcher's interface, only where it exists and nobody chose one already.

    NCCL otherwise may pick a bridge or loopback interface that the other hosts cannot reach; given one that
    does not exist (SDK v3's local `ethwe`), it finds no interface at all and the job fails.
    """
    if plan.process_count == 1 or not plan.network_interface or NCCL_INTERFACE in environ:
        return {}
    if usable_interface(plan.network_interface, interfaces):
        return {NCCL_INTERFACE: plan.network_interface}
    print(
        f"network interface {plan.network_interface!r} (from the launcher) does not exist here: "
        f"{NCCL_INTERFACE} left for NCCL to choose",
        file=sys.stderr,
        flush=True,
    )
    return {}


def join_cluster(
    environ: MutableMapping[str, str] | None = None,
    resource_config: Path | None = None,
    interfaces: Path = NETWORK_INTERFACES,
) -> JoinPlan:
    """Starts `jax.distributed` from whatever the launcher provided; a no-op on one process.

    Call it first, before anything touches a JAX device: `from jax_llm.contract.distributed import
    join_cluster; join_cluster()`. Returns the plan it followed.
    """
    environ = os.environ if environ is None else environ
    plan = plan_join(environ, resource_config)
    if plan.process_count == 1:
        return plan
    import jax

    environ.update(nccl_environment(plan, environ, interfaces))
    # CPU collectives (the CPU backend, tests) need gloo across processes; GPU collectives use NCCL.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    _wait_for_dns(plan.coordinator.rsplit(":", 1)[0].strip("[]"), DNS_RETRY_SECONDS)
    print(
        f"joining {plan.process_count} processes as process {plan.process_id}, coordinator "
        f"{plan.coordinator} (from {plan.source})",
        flush=True,
    )
    jax.distributed.initialize(
        coordinator_address=plan.coordinator,
        num_processes=plan.process_count,
        process_id=plan.process_id,
    )
    return plan


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
