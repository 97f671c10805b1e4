"""Shared fixtures: one tiny training run per test session, laid out exactly as SageMaker lays out /opt/ml.

`tiny_training_run` trains the tiny preset once on real text (Python stdlib sources, built offline)
through `python -m jax_llm train`, as the image runs it. Server, pipeline and local-mode tests read its
exported model and its log instead of training again.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support import TINY_HYPERPARAMETERS, TrainingRun, free_port, run_training, write_training_tree


@pytest.fixture(scope="session")
def moto_server():
    """moto's server (a real HTTP AWS emulator) on a free local port for the whole session; yields its URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="session")
def tiny_training_run(tmp_path_factory) -> TrainingRun:
    """The tiny preset trained once per session (24 steps of 8 x 64 tokens, 10-20 s on 2 CPU cores)."""
    root = write_training_tree(tmp_path_factory.mktemp("tiny-run") / "opt-ml", TINY_HYPERPARAMETERS)
    code, log = run_training(root)
    if code != 0:
        pytest.fail(f"tiny training run exited {code}:\n{log[-4000:]}")
    return TrainingRun(root, log)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """The `mlflow` package's own tracking server on 127.0.0.1 (SQLite store, artifacts proxied into a tmp
    directory) for the whole session; yields its URL."""
    import time
    import urllib.request

    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log = open(root / "server.log", "w")  # noqa: SIM115 - owned by the server until it stops
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=root,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"mlflow server did not start:\n{(root / 'server.log').read_text()[-3000:]}")
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
