"""`--docker`: the image built from containers/jax-llm and each job run in it, on Docker or Podman.

This is what SageMaker's own local mode does: the job's /opt/ml tree mounted at /opt/ml, the image's
ENTRYPOINT given `train`, `serve` or `prepare ...`, several hosts as containers on one network where
`algo-1..N` resolve, a single training host with no network at all (what `EnableNetworkIsolation` gives
the job), `serve` published on 8080, and `docker stop` / `podman stop` (SIGTERM to PID 1, SIGKILL after
the grace period) to stop a container. Where no engine answers, the runner says so and runs the same
entry points as host processes, which behave as the image does (DESIGN.md: the container contract).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from jax_llm.contract.paths import DEFAULT_ROOT as CONTAINER_ROOT
from jax_llm.contract.paths import IMAGE_SOURCE
from jax_llm.contract.serving import SERVING_PORT
from local_mode import base_image

ENGINES = ("docker", "podman")  # tried in this order
ENGINE_VARIABLE = "LOCAL_MODE_ENGINE"  # forces one of ENGINES
IMAGE_TAG = "localhost/jax-llm:local"
CA_SECRET_ID = "pip-ca"  # the Dockerfile's build secret: a CA bundle for a TLS-inspecting proxy
PROBE_TIMEOUT_S = 20
DOCKER_BUILDX = "docker-buildx-plugin, or Debian's docker-buildx"
INSTALL = (
    "install Podman (Debian/Ubuntu: apt-get install podman runc; .ci/install-container-engine does it "
    f"and configures it) or Docker with BuildKit ({DOCKER_BUILDX})"
)
ISOLATED = "none"  # the network of a container that may reach nothing (EnableNetworkIsolation)

Log = Callable[[str], None]


class EngineError(RuntimeError):
    """No usable engine although one was forced, or the image could not be built."""


def _probe_argv(name: str) -> list[str]:
    # Docker: the server's version proves a daemon answers. Podman has no daemon: `info` proves that its
    # storage and runtime work for this user.
    if name == "docker":
        return ["docker", "version", "--format", "{{.Server.Version}}"]
    return ["podman", "info", "--format", "{{.Host.OCIRuntime.Name}}"]


def _answer(argv: list[str]) -> tuple[bool, str]:
    """(whether `argv` answered with exit 0 and some output, its last words otherwise)."""
    try:
        probe = subprocess.run(argv, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return False, f"no answer within {PROBE_TIMEOUT_S} s"
    if probe.returncode != 0 or not probe.stdout.strip():
        return False, (probe.stderr.strip().splitlines() or [f"exit {probe.returncode}, no answer"])[-1]
    return True, ""


def unusable_reason(name: str) -> str | None:
    """None when engine `name` can build the image and run containers here; otherwise why not, in words a
    user can act on."""
    if shutil.which(name) is None:
        return f"{name} is not installed"
    answered, detail = _answer(_probe_argv(name))
    if not answered:
        return f"{name} cannot run containers: {detail}"
    # The build hands the proxy's CA over as a secret (`--secret`), which only BuildKit takes: a docker CLI
    # without its buildx plugin falls back to the legacy builder, which fails with `unknown flag: --secret`.
    # Podman's own builder (buildah) takes secrets.
    if name == "docker" and not _answer(["docker", "buildx", "version"])[0]:
        return (
            "docker answers but cannot build with a secret: it has no buildx (BuildKit) plugin, and its "
            f"legacy builder rejects --secret (install {DOCKER_BUILDX})"
        )
    return None


def find_engine(environ: Mapping[str, str] | None = None) -> tuple[str | None, list[str]]:
    """The first engine that can build and run the image (or the one LOCAL_MODE_ENGINE forces), and why each
    other cannot: Docker only with BuildKit, else Podman."""
    environ = os.environ if environ is None else environ
    forced = environ.get(ENGINE_VARIABLE, "").strip()
    if forced and forced not in ENGINES:
        raise EngineError(f"{ENGINE_VARIABLE}={forced!r}: allowed values are {', '.join(ENGINES)}")
    reasons = []
    for name in [forced] if forced else ENGINES:
        reason = unusable_reason(name)
        if reason is None:
            return name, reasons
        reasons.append(reason)
    return None, reasons


def has_gpu() -> bool:
    """Whether containers can be given the host's NVIDIA GPUs."""
    return shutil.which("nvidia-smi") is not None


def build_ca_bundle(environ: Mapping[str, str] | None = None) -> Path | None:
    """The CA bundle pip trusts on this machine (PIP_CERT), handed to the build as a secret, else None."""
    environ = os.environ if environ is None else environ
    bundle = environ.get("PIP_CERT", "")
    return Path(bundle) if bundle and Path(bundle).is_file() else None


@dataclasses.dataclass(frozen=True)
class ContainerEngine:
    """One engine (`docker` or `podman`): builds the image and composes the command lines of a job."""

    name: str
    tag: str = IMAGE_TAG
    gpu: bool = False

    @property
    def variant(self) -> str:
        """The Dockerfile's VARIANT: the GPU image where containers can have GPUs, else the CPU one."""
        return "gpu" if self.gpu else "cpu"

    def build_argv(
        self,
        base: str,
        ca_bundle: Path | None = None,
        context: Path = IMAGE_SOURCE,
        *,
        no_cache: bool = False,
    ) -> list[str]:
        """`build` of `context` on `base`; the dependency layer stays cached across code changes."""
        argv = [
            self.name,
            "build",
            "--tag",
            self.tag,
            "--build-arg",
            f"VARIANT={self.variant}",
            "--build-arg",
            f"BASE_IMAGE={base}",
        ] + (["--no-cache"] if no_cache else [])
        if self.name == "podman":
            argv += ["--format", "docker"]  # the OCI format drops SHELL, which the Dockerfile's RUNs rely on
        if ca_bundle is not None:  # mounted for the pip step only, never written into a layer
            argv += ["--secret", f"id={CA_SECRET_ID},src={ca_bundle}"]
        return argv + [str(context)]

    def run_argv(
        self,
        tree: Path,
        arguments: Sequence[str],
        *,
        container: str,
        hostname: str,
        env: Mapping[str, str],
        network: str | None = ISOLATED,
        port: int | None = None,
    ) -> list[str]:
        """`run IMAGE <arguments>` with `tree` at /opt/ml, the way SageMaker starts the container.

        `network`: ISOLATED for none at all, a job network's name (the container answers to `hostname`
        there), or None for the engine's default bridge (what publishing `port` needs).
        """
        argv = [
            self.name,
            "run",
            "--rm",
            "--name",
            container,
            "--hostname",
            hostname,
            "--volume",
            f"{tree}:{CONTAINER_ROOT}",
        ]
        if network is not None:
            argv += ["--network", network]
            if network != ISOLATED:
                argv += ["--network-alias", hostname]
        if self.gpu:
            argv += ["--gpus", "all"] if self.name == "docker" else ["--device", "nvidia.com/gpu=all"]
        if port is not None:
            argv += ["--publish", f"127.0.0.1:{port}:{SERVING_PORT}"]
        for key, value in sorted(env.items()):
            argv += ["--env", f"{key}={value}"]
        return argv + [self.tag, *arguments]

    def stop_argv(self, container: str, grace_s: float) -> list[str]:
        """`stop`: SIGTERM to the container's PID 1, SIGKILL after `grace_s`, as SageMaker stops a job."""
        return [self.name, "stop", "--time", str(max(1, round(grace_s))), container]

    def build(
        self, log: Log, base: str | None = None, context: Path = IMAGE_SOURCE, *, no_cache: bool = False
    ) -> None:
        """Builds the image from `context` (containers/jax-llm) on `base`, or on what base_image resolves."""
        base = base or base_image.resolve(self.name, log)
        ca_bundle = build_ca_bundle()
        log(
            f"building {self.tag} ({self.variant}) on {base} with {self.name}"
            + (f", trusting {ca_bundle} for pip (build secret)" if ca_bundle else "")
        )
        argv = self.build_argv(base, ca_bundle, context, no_cache=no_cache)
        result = subprocess.run(argv, capture_output=True, text=True)
        if result.returncode != 0:
            raise EngineError(
                f"{self.name} build failed (exit {result.returncode}):\n"
                + "\n".join((result.stdout + result.stderr).splitlines()[-30:])
            )

    def image_size(self) -> int:
        """Bytes of the built image, as the engine counts them (uncompressed layers)."""
        inspect = [self.name, "image", "inspect", "--format", "{{.Size}}", self.tag]
        return int(subprocess.run(inspect, check=True, capture_output=True, text=True).stdout.strip())

    def stop(self, container: str, grace_s: float) -> None:
        """Stops `container` if it still runs (a container that already exited is not an error)."""
        subprocess.run(
            self.stop_argv(container, grace_s),
            capture_output=True,
            text=True,
            timeout=grace_s + PROBE_TIMEOUT_S,
        )

    @contextlib.contextmanager
    def network(self, name: str) -> Iterator[None]:
        """A user-defined bridge network for the job's life, so that algo-1..N resolve to each other."""
        subprocess.run([self.name, "network", "create", name], check=True, capture_output=True)
        try:
            yield
        finally:
            subprocess.run([self.name, "network", "rm", "--force", name], check=False, capture_output=True)


def container_name(job_name: str, host: str) -> str:
    """A container name the engines accept, unique per job and host."""
    return re.sub(r"[^a-zA-Z0-9_.-]", "-", f"{job_name}-{host}")


def engine(requested: bool, log: Log) -> ContainerEngine | None:
    """The built image's engine, or None for host processes (said out loud if --docker was given)."""
    if not requested:
        return None
    name, reasons = find_engine()
    if name is None and os.environ.get(ENGINE_VARIABLE):
        raise EngineError(f"{ENGINE_VARIABLE} forces an engine that cannot run containers: {reasons[0]}")
    if name is None:
        log(
            f"--docker: no container engine answers ({'; '.join(reasons)}); running host processes instead. "
            f"To run the image: {INSTALL}"
        )
        return None
    built = ContainerEngine(name, gpu=has_gpu())
    built.build(log)
    return built
