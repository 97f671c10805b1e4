"""`--docker`: build the image from containers/jax-llm and run it with the tree mounted at /opt/ml.

This is what SageMaker's own local mode does. Without a reachable engine the runner says so and runs the same
entry points as host processes, which behave as the image does (DESIGN.md: the container contract).
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from jax_llm.paths import SageMakerPaths

CONTAINER_ROOT = "/opt/ml"
IMAGE_TAG = "jax-llm:local"
CONTEXT = Path(__file__).resolve().parent.parent / "containers" / "jax-llm"
SERVING_PORT = 8080  # the port SageMaker sends /ping and /invocations to
PROBE_TIMEOUT_S = 10


def unreachable_reason() -> str | None:
    """None when a Docker engine answers; otherwise why not, in words a user can act on."""
    if shutil.which("docker") is None:
        return "the docker client is not installed"
    try:
        probe = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return f"the engine did not answer within {PROBE_TIMEOUT_S} s"
    if probe.returncode != 0 or not probe.stdout.strip():
        detail = (probe.stderr.strip().splitlines() or ["no server version"])[-1]
        return f"the docker client cannot reach an engine: {detail}"
    return None


def has_gpu() -> bool:
    """Whether containers can be given the host's NVIDIA GPUs."""
    return shutil.which("nvidia-smi") is not None


@dataclasses.dataclass(frozen=True)
class DockerEngine:
    """Builds the image once and composes `docker run` command lines for one job's containers."""

    tag: str = IMAGE_TAG
    gpu: bool = False

    def build_argv(self) -> list[str]:
        """`docker build`; without a GPU, the Dockerfile's CPU build argument leaves the CUDA wheels out."""
        argv = ["docker", "build", "--tag", self.tag]
        if not self.gpu:
            argv += ["--build-arg", "CPU_ONLY=1"]
        return argv + [str(CONTEXT)]

    def run_argv(
        self,
        paths: SageMakerPaths,
        arguments: Sequence[str],
        *,
        hostname: str,
        env: Mapping[str, str],
        network: str | None = None,
        coordinator: str | None = None,
        port: int | None = None,
    ) -> list[str]:
        """`docker run IMAGE <arguments>` with the tree at /opt/ml, the way SageMaker starts the container."""
        argv = ["docker", "run", "--rm", "--hostname", hostname, "--volume", f"{paths.root}:{CONTAINER_ROOT}"]
        if network:  # several hosts: each container answers to its algo-N name on a shared network
            argv += ["--network", network, "--network-alias", hostname]
        if self.gpu:
            argv += ["--gpus", "all"]
        if port is not None:
            argv += ["--publish", f"127.0.0.1:{port}:{SERVING_PORT}"]
        environment = dict(env, JAX_COORDINATOR_ADDRESS=coordinator) if coordinator else dict(env)
        for key, value in sorted(environment.items()):
            argv += ["--env", f"{key}={value}"]
        return argv + [self.tag, *arguments]

    def build(self, log: Callable[[str], None]) -> None:
        """Builds the image from containers/jax-llm (dependency layer cached: code changes rebuild fast)."""
        log(f"building {self.tag} from {CONTEXT}")
        subprocess.run(self.build_argv(), check=True)

    @contextlib.contextmanager
    def network(self, name: str | None) -> Iterator[None]:
        """A user-defined bridge network for the job's life, so that algo-1..N resolve to each other."""
        if name is None:
            yield
            return
        subprocess.run(["docker", "network", "create", name], check=False, capture_output=True)
        try:
            yield
        finally:
            subprocess.run(["docker", "network", "rm", name], check=False, capture_output=True)


def engine(requested: bool, log: Callable[[str], None]) -> DockerEngine | None:
    """The engine to run containers on, or None for host processes (said out loud if --docker was given)."""
    if not requested:
        return None
    reason = unreachable_reason()
    if reason is not None:
        log(f"--docker: no Docker engine reachable ({reason}); running host processes instead")
        return None
    built = DockerEngine(gpu=has_gpu())
    built.build(log)
    return built
