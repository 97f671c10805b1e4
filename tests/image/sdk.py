"""The SageMaker SDK as the test client: its own local mode over the test engine's Docker API, offline.

Both SDK generations shell out to a compose tool and talk to Docker's API. With Podman, the API is
`podman system service` on a socket of this session's own (started and stopped here, by its PID); with
Docker, the daemon's. The SDK's processes get fake credentials, telemetry opted out, and a proxy that
answers nothing, so any call to AWS fails at once instead of leaving the machine. A job is judged by its
outputs (`failure` in output.tar.gz, the model), never by what the SDK says: compose tools lose the
container's exit code against Podman.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "sdk"
V2_PYTHON = REPO / ".venv-sdk-v2" / "bin" / "python"  # SDK v2's own venv (make; requirements-sdk-v2.txt)
DEAD_PROXY = "http://127.0.0.1:9"  # the discard port: nothing listens, so a request fails at once
SOCKET_WAIT_S = 30


def compose_tool() -> str | None:
    """The compose command the SDKs will find (`docker compose`, else `docker-compose`), or None."""
    if (
        shutil.which("docker")
        and subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30).returncode == 0
    ):
        return "docker compose"
    return "docker-compose" if shutil.which("docker-compose") else None


@contextlib.contextmanager
def docker_api(engine: str, directory: Path) -> Iterator[str]:
    """DOCKER_HOST for `engine`: Podman's API service on a socket in `directory` for the block's life."""
    if engine == "docker":
        yield os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        return
    socket = directory / "podman.sock"
    log = open(directory / "podman-service.log", "w")  # noqa: SIM115 - the service's until it stops
    service = subprocess.Popen(
        ["podman", "system", "service", "--time=0", f"unix://{socket}"], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + SOCKET_WAIT_S
        while not socket.exists():
            if service.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"podman system service did not start: "
                    f"{(directory / 'podman-service.log').read_text()[-2000:]}"
                )
            time.sleep(0.1)
        yield f"unix://{socket}"
    finally:
        service.terminate()
        try:
            service.wait(timeout=30)
        except subprocess.TimeoutExpired:
            service.kill()
        log.close()


def offline_environment(docker_host: str, directory: Path) -> dict[str, str]:
    """The SDK process's environment: the engine's API, fake credentials, no telemetry, no way out."""
    config = directory / "sagemaker-config.yaml"  # the SDK's defaults file: telemetry off
    config.write_text(
        "SchemaVersion: '1.0'\nSageMaker:\n  PythonSDK:\n    Modules:\n      TelemetryOptOut: true\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SAGEMAKER_"))}
    env.update(
        {
            "DOCKER_HOST": docker_host,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "SAGEMAKER_USER_CONFIG_OVERRIDE": str(config),
            "SAGEMAKER_ADMIN_CONFIG_OVERRIDE": str(config),
            "HTTP_PROXY": DEAD_PROXY,
            "HTTPS_PROXY": DEAD_PROXY,
            "http_proxy": DEAD_PROXY,
            "https_proxy": DEAD_PROXY,
            "NO_PROXY": "localhost,127.0.0.1",
            "no_proxy": "localhost,127.0.0.1",
            "PYTHONUNBUFFERED": "1",
            "SAGEMAKER_SUPPRESS_V2_WARNING": "1",
        }
    )
    return env


def run_example(
    env: Mapping[str, str],
    script: str,
    args: list[str],
    cwd: Path,
    python: str = sys.executable,
    timeout: float = 600,
) -> subprocess.CompletedProcess:
    """Runs examples/sdk/<script> as a user would, in `cwd`; stdout and stderr together."""
    return subprocess.run(
        [python, str(EXAMPLES / script), *args],
        env=dict(env),
        cwd=cwd,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=timeout,
    )


def read_member(archive: Path, name: str) -> str | None:
    """A file of a job's tar.gz (`failure`, `data/loss_curves.json`), or None where it has none."""
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if member.name.lstrip("./") == name:
                return tar.extractfile(member).read().decode()
    return None


def member_names(archive: Path) -> set[str]:
    """The file names in a job's tar.gz."""
    with tarfile.open(archive) as tar:
        return {m.name.lstrip("./") for m in tar.getmembers() if m.isfile()}


def losses(curves_json: str) -> list[tuple[int, float]]:
    """(step, train_loss) pairs of the trainer's loss_curves.json."""
    return [(int(step), float(loss)) for step, loss in json.loads(curves_json)["train_loss"]]


def remove_compose_containers(engine: str, image_tag: str) -> None:
    """Containers of `image_tag` that compose projects left behind (the SDKs stop them, never remove them).

    The test image's tag is this checkout's own (JAX_LLM_TEST_IMAGE), so nobody else's containers match.
    """
    listed = subprocess.run(
        [
            engine,
            "ps",
            "-aq",
            "--filter",
            "label=com.docker.compose.project",
            "--filter",
            f"ancestor={image_tag}",
        ],
        capture_output=True,
        text=True,
    )
    ids = listed.stdout.split()
    if ids:
        subprocess.run([engine, "rm", "--force", *ids], capture_output=True)
