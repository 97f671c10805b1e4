"""`serve` with the team's `code/inference.py`: SageMaker's handler functions over real HTTP.

Each test lays out a model directory with a handler and starts `python -m jax_llm serve` on it (no JAX is
imported for a handler: a server starts in about a second).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.support import REPO, free_port

EXAMPLE = REPO / "examples" / "script_mode" / "src" / "inference.py"


def model_dir(root: Path, handler: str, name: str = "inference.py") -> Path:
    code = root / "model" / "code"
    code.mkdir(parents=True)
    (code / name).write_text(textwrap.dedent(handler))
    return root


class Served:
    def __init__(self, root: Path, **env: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = root / "serve.log"
        environ = {
            **os.environ,
            "SAGEMAKER_BASE_DIR": str(root),
            "SAGEMAKER_BIND_TO_PORT": str(self.port),
            "PYTHONPATH": str(REPO / "containers" / "jax-llm"),
            **env,
        }
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "jax_llm", "serve"], env=environ, stdout=log, stderr=subprocess.STDOUT
            )

    def pings(self, until, timeout_s: float = 60) -> list[tuple[int, float]]:
        """(status, seconds it took) of each /ping until `until(status)`."""
        answers, deadline = [], time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            started = time.monotonic()
            try:
                status = httpx.get(f"{self.url}/ping", timeout=5).status_code
            except httpx.TransportError:
                time.sleep(0.05)
                continue
            answers.append((status, time.monotonic() - started))
            if until(status):
                return answers
            time.sleep(0.1)
        pytest.fail(f"/ping never got there: {answers[-3:]}\n{self.log.read_text()}")

    def invoke(self, body, content_type: str = "application/json", **headers) -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return httpx.post(
            f"{self.url}/invocations",
            content=content,
            timeout=60,
            headers={"Content-Type": content_type, **headers},
        )

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def test_all_four_functions_of_the_example_serve_its_model(tmp_path):
    root = model_dir(tmp_path, EXAMPLE.read_text())
    logits = np.full((256, 256), -1.0, np.float32)
    logits[:, ord("a")] = 1.0  # every byte is followed by "a"
    np.save(root / "model" / "bigram.npy", logits)
    with Served(root) as served:
        served.pings(lambda s: s == 200)
        answer = served.invoke({"inputs": "b", "max_new_bytes": 3})
        assert answer.status_code == 200 and answer.json() == {"generated_text": "baaa"}
        refused = served.invoke(b"b", content_type="text/plain")  # the handler's own input_fn refuses
        assert (
            refused.status_code == 500 and "send application/json, not text/plain" in refused.json()["error"]
        )
        assert served.invoke({"inputs": "x", "max_new_bytes": 1}).json() == {"generated_text": "xa"}


def test_only_model_fn_gets_the_toolkit_s_decoder_predict_and_encoder(tmp_path):
    root = model_dir(
        tmp_path,
        """
        def model_fn(model_dir):
            return lambda data: data * 2  # a callable model: the default predict_fn calls it
    """,
    )
    with Served(root) as served:
        served.pings(lambda s: s == 200)
        answer = served.invoke([[1, 2], [3, 4]], Accept="application/json")
        assert answer.status_code == 200 and answer.json() == [[2, 4], [6, 8]]
        csv = served.invoke(b"1,2\n3,4\n", content_type="text/csv", Accept="text/csv")
        assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
        assert [line.split(",") for line in csv.text.split()] == [["2", "4"], ["6", "8"]]


def test_transform_fn_alone_answers_with_its_own_content_type(tmp_path):
    root = model_dir(
        tmp_path,
        """
        def model_fn(model_dir):
            return "shout"

        def transform_fn(model, body, content_type, accept):
            return body.upper(), "text/plain"
    """,
    )
    with Served(root) as served:
        served.pings(lambda s: s == 200)
        answer = served.invoke(b"hello", content_type="text/plain")
        assert answer.status_code == 200 and answer.text == "HELLO"
        assert answer.headers["content-type"].startswith("text/plain")


def test_sagemaker_program_names_another_file_in_code(tmp_path):
    root = model_dir(tmp_path, "def model_fn(d):\n    return lambda x: x\n", name="handler.py")
    with Served(root, SAGEMAKER_PROGRAM="handler.py") as served:
        served.pings(lambda s: s == 200)
        assert served.invoke([5]).json() == [5]


@pytest.mark.parametrize(
    "handler, says",
    [
        (
            "def model_fn(model_dir):\n    raise FileNotFoundError('weights.npy is missing')\n",
            "inference.py: FileNotFoundError: weights.npy is missing",
        ),
        ("def predict_fn(data, model):\n    return data\n", "inference.py defines no model_fn(model_dir)"),
        (
            "def model_fn(d):\n    return 1\ndef transform_fn(m, b, c, a):\n    return b\n"
            "def input_fn(b, c):\n    return b\n",
            "defines transform_fn together with input_fn",
        ),
    ],
)
def test_a_handler_that_cannot_load_is_a_500_on_ping_naming_why(tmp_path, handler, says):
    with Served(model_dir(tmp_path, handler)) as served:
        ((status, _),) = served.pings(lambda s: s != 503)[-1:]
        assert status == 500
        assert says in httpx.get(f"{served.url}/ping", timeout=5).json()["error"]
        assert served.invoke([1]).status_code == 500


def test_a_failing_request_is_a_500_for_that_request_only(tmp_path):
    root = model_dir(
        tmp_path,
        """
        def model_fn(model_dir):
            return None

        def predict_fn(data, model):
            if data == [0]:
                raise ZeroDivisionError("division by zero")
            return [1 / x for x in data]
    """,
    )
    with Served(root) as served:
        served.pings(lambda s: s == 200)
        failed = served.invoke([0])
        assert failed.status_code == 500 and failed.json() == {
            "error": "inference.py: ZeroDivisionError: division by zero",
            "error_type": "handler",
        }
        assert served.invoke([4]).json() == [0.25]
        assert httpx.get(f"{served.url}/ping", timeout=5).status_code == 200


def test_ping_stays_fast_during_a_slow_model_fn_and_a_slow_request(tmp_path):
    root = model_dir(
        tmp_path,
        """
        import time

        def model_fn(model_dir):
            time.sleep(4)  # loading big weights
            return None

        def predict_fn(data, model):
            time.sleep(3)  # a long computation, off the event loop
            return data
    """,
    )
    with Served(root) as served:
        answers = served.pings(lambda s: s == 200)
        assert [s for s, _ in answers[:-1]] and {s for s, _ in answers[:-1]} == {503}
        assert len(answers) > 5 and max(t for _, t in answers) < 0.5  # SageMaker allows 2 s per /ping
        slow = threading.Thread(target=served.invoke, args=([1],))
        slow.start()
        time.sleep(0.5)
        during = served.pings(lambda s: s == 200)
        assert during[-1][1] < 0.5
        slow.join()


def test_code_requirements_are_installed_at_start_from_wheels_in_code(tmp_path):
    from tests.containers.contract.test_script_mode import _wheel

    root = model_dir(
        tmp_path,
        """
        import tinydep

        def model_fn(model_dir):
            return lambda data: tinydep.VALUE
    """,
    )
    (root / "model" / "code" / "requirements.txt").write_text("tinydep==1.0\n")
    _wheel(root / "model" / "code")
    with Served(
        root,
        PIP_NO_INDEX="1",
        PIP_TARGET=str(tmp_path / "site"),
        PYTHONPATH=f"{REPO / 'containers' / 'jax-llm'}:{tmp_path / 'site'}",
    ) as served:
        served.pings(lambda s: s == 200)
        assert served.invoke([1]).json() == 42


def test_a_handler_answer_that_is_no_http_body_is_a_json_500_for_that_request_only(tmp_path):
    """A dict from output_fn, or a content type with a newline, got a plain-text 500 or no answer at all."""
    root = model_dir(
        tmp_path,
        """
        def model_fn(model_dir):
            return None

        def transform_fn(model, body, content_type, accept):
            if body == "[1]":
                return {"not": "bytes"}, "application/json"
            if body == "[2]":
                return b"{}", "application/json\\r\\nX-Injected: 1"
            if body == "[3]":
                return b"{}", 42
            return b"[0]", "application/json"
    """,
    )
    with Served(root) as served:
        served.pings(lambda s: s == 200)
        for body, says in (([1], "returned a dict"), ([2], "not a media type"), ([3], "not a media type")):
            failed = served.invoke(body)
            assert failed.status_code == 500 and failed.json()["error_type"] == "handler", failed.text
            assert says in failed.json()["error"] and "X-Injected" not in failed.headers
        assert served.invoke([0]).json() == [0]


@pytest.mark.parametrize("exit_call", ["sys.exit(3)", "raise KeyboardInterrupt", "raise SystemExit('bye')"])
def test_a_model_fn_that_exits_is_reported_on_ping_and_in_the_log(tmp_path, exit_call):
    """sys.exit() in model_fn left /ping at 503 "loading" forever with nothing logged."""
    root = model_dir(tmp_path, f"import sys\n\ndef model_fn(model_dir):\n    {exit_call}\n")
    with Served(root) as served:
        served.pings(lambda s: s != 503, timeout_s=30)
        ping = httpx.get(f"{served.url}/ping", timeout=5)
        assert ping.status_code == 500 and ping.json()["error_type"] == "load_failed"
        kind = exit_call.split("(")[0].split()[-1].replace("sys.exit", "SystemExit")
        assert kind in ping.json()["error"]
        assert "loading the model through" in served.log.read_text()


def test_a_slow_handler_gets_a_json_504_at_the_deadline_and_the_pool_never_queues(tmp_path):
    """Handlers had no deadline: a slow one filled the threadpool and everything queued behind it."""
    root = model_dir(
        tmp_path,
        """
        import time

        def model_fn(model_dir):
            return None

        def predict_fn(data, model):
            if data == ["slow"]:
                time.sleep(6)
            return data
    """,
    )
    with Served(root, JAX_LLM_REQUEST_TIMEOUT_S="1.5", JAX_LLM_MAX_BATCH="2") as served:
        served.pings(lambda s: s == 200)
        started = time.monotonic()
        slow = served.invoke(["slow"])
        assert slow.status_code == 504 and slow.json()["error_type"] == "time_limit", slow.text
        assert time.monotonic() - started < 4
        second = served.invoke(["slow"])  # both threads now run past their deadline
        assert second.status_code == 504
        busy = served.invoke([1])
        assert busy.status_code == 503 and busy.json()["error_type"] == "overloaded", busy.text
        assert httpx.get(f"{served.url}/ping", timeout=5).status_code == 200
        time.sleep(5)  # the slow calls return: their threads serve again
        assert served.invoke([1]).json() == [1]


def test_unknown_routes_of_the_handler_server_answer_json(tmp_path):
    root = model_dir(tmp_path, "def model_fn(model_dir):\n    return None\n")
    with Served(root) as served:
        served.pings(lambda s: s == 200)
        missing = httpx.get(f"{served.url}/nowhere", timeout=5)
        assert missing.status_code == 404 and missing.json()["error_type"] == "not_found"
