"""What the serving tests share besides fixtures: the server's slot and queue sizes, and how a test starts
`python -m jax_llm serve` on an /opt/ml tree and waits for it over real HTTP.

Fixtures (the tiny model and tokenizer, one compiled runner, the session's server) live in `conftest.py`
and are built from these; test modules import from here, never from a conftest.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support import REPO, free_port

__all__ = [
    "BODY_TIMEOUT_S",
    "QUEUE",
    "SLOTS",
    "Server",
    "ping_until",
    "running_server",
    "start_server",
]

SLOTS = 4
QUEUE = 28  # with SLOTS, capacity 32: the concurrency test fills it, the 422 test overflows it
BODY_TIMEOUT_S = 2  # a partial body held open is answered 408 after this


@dataclasses.dataclass
class Server:
    process: subprocess.Popen
    url: str
    first_ping: httpx.Response  # the first answer after the socket opened
    seconds_to_listen: float
    seconds_to_ready: float  # from just before the process was started to the first 200 on /ping
    log_file: Path

    def log(self) -> str:
        return self.log_file.read_text()


def start_server(root: Path, log_file: Path, cache_dir: Path, **extra: str) -> tuple[subprocess.Popen, str]:
    """`python -m jax_llm serve` on the /opt/ml tree `root`, listening on a free port of 127.0.0.1.
    `extra`: more environment variables (settings)."""
    port = free_port()
    env = {
        **os.environ,
        "SAGEMAKER_BASE_DIR": str(root),
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "JAX_PLATFORMS": "cpu",
        "JAX_LLM_MAX_BATCH": str(SLOTS),
        "JAX_LLM_MAX_QUEUE": str(QUEUE),
        "JAX_LLM_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
        "JAX_LLM_COMPILE_CACHE_DIR": str(cache_dir),
        "PYTHONPATH": str(REPO / "containers" / "jax-llm"),
        **extra,
    }
    with open(log_file, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "jax_llm", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    return process, f"http://127.0.0.1:{port}"


def ping_until(process: subprocess.Popen, url: str, log_file: Path, done) -> tuple[httpx.Response, float]:
    """Polls /ping until `done(response)`; returns the first answer and seconds to it from now."""
    started, first = time.monotonic(), None
    while time.monotonic() - started < 120:
        assert process.poll() is None, f"server exited {process.returncode}:\n{log_file.read_text()}"
        try:
            response = httpx.get(f"{url}/ping", timeout=2)
        except httpx.TransportError:
            time.sleep(0.02)
            continue
        first = first or (response, time.monotonic() - started)
        if done(response):
            return first
        time.sleep(0.1)
    pytest.fail(f"/ping never reached the expected state in 120 s:\n{log_file.read_text()}")


@contextlib.contextmanager
def running_server(root: Path, log_file: Path, cache_dir: Path, **extra: str):
    """A server on `root`, yielded once /ping says 200; killed afterwards if it still runs."""
    before_start = time.monotonic()
    process, url = start_server(root, log_file, cache_dir, **extra)
    try:
        first_ping, listened = ping_until(process, url, log_file, lambda r: r.status_code == 200)
        yield Server(process, url, first_ping, listened, time.monotonic() - before_start, log_file)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
