"""Serving fixtures: the tiny training run's model and tokenizer, one compiled runner (in-process), and one
`python -m jax_llm serve` process on its /opt/ml tree over real HTTP, as SageMaker calls it."""

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

from jax_llm.data.tokenizer import load_tokenizer
from jax_llm.model.export import TOKENIZER_FILE, load_model
from jax_llm.serving.engine.runner import ModelRunner
from jax_llm.serving.settings import ServingSettings
from tests.support import REPO, free_port

SLOTS = 4


@pytest.fixture(scope="session")
def tiny_model(tiny_training_run):
    """The GPT the tiny training run exported."""
    return load_model(tiny_training_run.model_dir)


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_training_run):
    """The tokenizer the tiny training run exported with its model."""
    return load_tokenizer(tiny_training_run.model_dir / TOKENIZER_FILE)


@pytest.fixture(scope="session")
def runner(tiny_model, tiny_training_run) -> ModelRunner:
    """A runner with 4 slots and the server's default prompt buckets, compiled once for the session."""
    settings = ServingSettings(model_dir=tiny_training_run.model_dir, decode_slots=SLOTS)
    runner = ModelRunner(tiny_model, SLOTS, settings.prompt_buckets(tiny_model.config.max_seq_len))
    runner.warm_up()
    return runner


# ---- The server over HTTP ------------------------------------------------------------------------

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


@pytest.fixture(scope="session")
def compile_cache(tmp_path_factory) -> Path:
    """JAX's persistent compilation cache, shared by every server of the session (later ones start faster)."""
    return tmp_path_factory.mktemp("compile-cache")


@pytest.fixture(scope="session")
def server(tiny_training_run, tmp_path_factory, compile_cache):
    """One server on the tiny run's /opt/ml tree for the session (TGI, OpenAI and /metrics tests share it)."""
    log_file = tmp_path_factory.mktemp("serve") / "serve.log"
    with running_server(tiny_training_run.root, log_file, compile_cache) as started:
        yield started
