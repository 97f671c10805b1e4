"""`python -m jax_llm serve` over real HTTP, as SageMaker calls it, in TGI's schema.

The session's server (conftest) serves the model the tiny training run exported; the SIGTERM test stops a
server of its own.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import threading
import time

import httpx
import pytest
from huggingface_hub import InferenceClient
from prometheus_client.parser import text_string_to_metric_families

from jax_llm.model.export import read_model_config
from tests.containers.serving.support import (
    BODY_TIMEOUT_S,
    QUEUE,
    SLOTS,
    Server,
    ping_until,
    running_server,
    start_server,
)

pytestmark = pytest.mark.slow


def test_a_model_that_fails_to_load_is_reported_on_ping(tmp_path):
    """An /opt/ml tree without a model: /ping and /invocations answer 500 saying why; nothing hangs."""
    (tmp_path / "ml" / "model").mkdir(parents=True)
    process, url = start_server(tmp_path / "ml", tmp_path / "serve.log", tmp_path / "cache")
    try:
        ping_until(process, url, tmp_path / "serve.log", lambda r: r.status_code != 503)
        failed = httpx.get(f"{url}/ping", timeout=2)
        assert failed.status_code == 500 and failed.json()["error_type"] == "load_failed"
        assert "config.json" in failed.json()["error"]
        refused = httpx.post(f"{url}/invocations", json={"inputs": "a"}, timeout=10)
        assert refused.status_code == 500 and refused.json()["error_type"] == "load_failed"
    finally:
        process.kill()
        process.wait()


def invoke(server: Server, payload, **kwargs) -> httpx.Response:
    return httpx.post(f"{server.url}/invocations", json=payload, timeout=60, **kwargs)


def assert_healthy(server: Server) -> None:
    assert httpx.get(f"{server.url}/ping", timeout=2).status_code == 200


def test_ping_answers_503_while_loading_then_200(server):
    assert server.first_ping.status_code == 503
    assert server.first_ping.json()["error_type"] == "not_ready"
    response = httpx.get(f"{server.url}/ping", timeout=2)
    assert response.status_code == 200


def test_greedy_generation_is_deterministic_and_has_details(server):
    payload = {"inputs": "def main(", "parameters": {"max_new_tokens": 12, "details": True}}
    first, second = invoke(server, payload), invoke(server, payload)
    assert first.status_code == 200, first.text
    assert first.json() == second.json()
    [entry] = first.json()
    details = entry["details"]
    assert details["generated_tokens"] == len(details["tokens"]) <= 12
    assert details["finish_reason"] in ("length", "eos_token")
    assert details["seed"] is None  # greedy
    text = "".join(t["text"] for t in details["tokens"] if not t["special"])
    assert text == entry["generated_text"] and text
    assert all(t["logprob"] <= 0 for t in details["tokens"])


def test_seeded_sampling_is_reproducible_and_seed_matters(server):
    params = {"max_new_tokens": 16, "do_sample": True, "temperature": 1.5, "top_k": 50, "top_p": 0.95}
    texts = {
        seed: [
            invoke(server, {"inputs": "import os\n", "parameters": {**params, "seed": seed}}).json()[0][
                "generated_text"
            ]
            for _ in range(2)
        ]
        for seed in (1, 2, 3)
    }
    assert all(a == b for a, b in texts.values())
    assert len({a for a, _ in texts.values()}) > 1


# Seeded sampling where outputs are compared: the tiny test model's greedy output repeats one token.
VARIED = {"do_sample": True, "temperature": 2.0, "seed": 5}


def test_batch_of_inputs_answers_each_in_order(server):
    prompts = ["class ", "def parse(", "return "]
    params = {"max_new_tokens": 6, **VARIED}
    response = invoke(server, {"inputs": prompts, "parameters": params})
    assert response.status_code == 200
    assert len(response.json()) == 3
    alone = [invoke(server, {"inputs": p, "parameters": params}).json()[0] for p in prompts]
    assert response.json() == alone
    assert len({entry["generated_text"] for entry in alone}) > 1  # rows that could be told apart


def test_return_full_text_prepends_the_prompt(server):
    response = invoke(
        server, {"inputs": "x = ", "parameters": {"max_new_tokens": 4, "return_full_text": True}}
    )
    plain = invoke(server, {"inputs": "x = ", "parameters": {"max_new_tokens": 4}})
    assert response.json()[0]["generated_text"] == "x = " + plain.json()[0]["generated_text"]


def test_stop_sequence_ends_generation(server):
    """TGI stops once the text ends with a stop sequence, which the text keeps."""
    payload = {"inputs": "def f(", "parameters": {"max_new_tokens": 40, "details": True}}
    free = invoke(server, payload).json()[0]
    pieces = [t["text"] for t in free["details"]["tokens"] if not t["special"]]
    upto = len(pieces) // 2
    while upto < len(pieces) and not "".join(pieces[:upto])[-2:].strip():
        upto += 1
    stop = "".join(pieces[:upto])[-2:]  # how the text reads after a token midway
    assert stop.strip(), f"cannot pick a stop sequence from {pieces!r}"
    cut = invoke(
        server, {"inputs": "def f(", "parameters": {"max_new_tokens": 40, "stop": [stop], "details": True}}
    )
    [entry] = cut.json()
    assert entry["details"]["finish_reason"] == "stop_sequence"
    assert entry["generated_text"].endswith(stop)
    assert len(entry["generated_text"]) < len(free["generated_text"])


def _sse_events(response: httpx.Response) -> list[dict]:
    return [json.loads(line[len("data:") :]) for line in response.iter_lines() if line.startswith("data:")]


def test_stream_events_concatenate_to_the_non_streamed_text(server):
    payload = {"inputs": "for i in range(", "parameters": {"max_new_tokens": 20, **VARIED}}
    expected = invoke(server, payload).json()[0]["generated_text"]
    headers = {"X-Amzn-SageMaker-Custom-Attributes": "trace=abc"}
    with httpx.stream(
        "POST", f"{server.url}/invocations", json={**payload, "stream": True}, headers=headers, timeout=60
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["transfer-encoding"] == "chunked"
        assert response.headers["x-amzn-sagemaker-custom-attributes"] == "trace=abc"
        events = _sse_events(response)
    assert all(set(e["token"]) == {"id", "text", "logprob", "special"} for e in events)
    assert all(e["generated_text"] is None for e in events[:-1])
    assert events[-1]["generated_text"] == expected
    assert "".join(e["token"]["text"] for e in events if not e["token"]["special"]) == expected


def test_custom_attributes_are_echoed(server):
    response = invoke(server, {"inputs": "a"}, headers={"X-Amzn-SageMaker-Custom-Attributes": "k=v"})
    assert response.headers["X-Amzn-SageMaker-Custom-Attributes"] == "k=v"


def test_prompt_longer_than_the_context_needs_truncate(server):
    long_prompt = "word " * 400  # well over the tiny model's context (at most 128 tokens)
    refused = invoke(server, {"inputs": long_prompt})
    assert refused.status_code == 422
    assert "context" in refused.json()["error"] and "truncate" in refused.json()["error"]
    kept = invoke(server, {"inputs": long_prompt, "parameters": {"truncate": 32, "max_new_tokens": 4}})
    assert kept.status_code == 200 and kept.json()[0]["generated_text"]


BAD_REQUESTS = [
    # (content, content type, status, words the error must contain)
    (b'{"inputs": "unterminated', "application/json", 400, "JSON"),
    (b"inputs=hello", "application/x-www-form-urlencoded", 415, "Content-Type"),
    (b'{"parameters": {}}', "application/json", 422, "inputs"),
    (b'{"inputs": ""}', "application/json", 422, "inputs"),
    (b'{"inputs": []}', "application/json", 422, "inputs"),
    (b'{"inputs": ["ok", 3]}', "application/json", 422, "inputs[1]"),
    (b"[1, 2]", "application/json", 422, "inputs"),
    (b'{"inputs": "a", "parameters": {"temperature": 0}}', "application/json", 422, "temperature"),
    (b'{"inputs": "a", "parameters": {"top_p": 1.5}}', "application/json", 422, "top_p"),
    (b'{"inputs": "a", "parameters": {"top_k": -1}}', "application/json", 422, "top_k"),
    (b'{"inputs": "a", "parameters": {"max_new_tokens": 0}}', "application/json", 422, "max_new_tokens"),
    (b'{"inputs": "a", "parameters": {"max_new_tokens": 100000}}', "application/json", 422, "max_new_tokens"),
    (b'{"inputs": "a", "parameters": {"max_new_tokens": "5"}}', "application/json", 422, "max_new_tokens"),
    (b'{"inputs": "a", "parameters": {"seed": -1}}', "application/json", 422, "seed"),
    (b'{"inputs": "a", "parameters": {"stop": [""]}}', "application/json", 422, "stop"),
    (
        b'{"inputs": "a", "parameters": {"repetition_penalty": 1.2}}',
        "application/json",
        422,
        "repetition_penalty",
    ),
    (b'{"inputs": "a", "parameters": {"max_tokens": 5}}', "application/json", 422, "max_tokens"),
    (b'{"inputs": ["a", "b"], "stream": true}', "application/json", 422, "stream"),
    (b"[" * 100_000 + b"]" * 100_000, "application/json", 400, "nested too deeply"),
]


@pytest.mark.parametrize("content, content_type, status, words", BAD_REQUESTS)
def test_bad_request_is_refused_with_json_and_the_server_stays_healthy(
    server, content, content_type, status, words
):
    response = httpx.post(
        f"{server.url}/invocations", content=content, headers={"Content-Type": content_type}, timeout=30
    )
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "error_type"} and words in body["error"]
    assert_healthy(server)


def test_body_over_6_mb_is_413(server):
    payload = json.dumps({"inputs": "x" * (6 * 1024 * 1024)}).encode()
    response = httpx.post(
        f"{server.url}/invocations", content=payload, headers={"Content-Type": "application/json"}, timeout=60
    )
    assert response.status_code == 413 and response.json()["error_type"] == "payload_too_large"
    assert_healthy(server)


def test_more_inputs_than_the_server_can_ever_hold_is_422_naming_the_limit_not_429(server):
    """429 says "retry later", which would never succeed: a client would retry forever."""
    response = invoke(server, {"inputs": ["a"] * (SLOTS + QUEUE + 1), "parameters": {"max_new_tokens": 2}})
    assert response.status_code == 422 and response.json()["error_type"] == "too_many_inputs"
    assert f"holds {SLOTS + QUEUE + 1} inputs" in response.json()["error"]
    assert (
        f"at most {SLOTS + QUEUE} at once ({SLOTS} slots + {QUEUE} queue places)" in response.json()["error"]
    )
    assert_healthy(server)
    full = invoke(server, {"inputs": ["a"] * (SLOTS + QUEUE), "parameters": {"max_new_tokens": 2}})
    assert full.status_code == 200 and len(full.json()) == SLOTS + QUEUE  # exactly the limit fits


def test_a_tiny_temperature_is_greedy_not_end_of_text(server):
    greedy = invoke(server, {"inputs": "def main(", "parameters": {"max_new_tokens": 8}}).json()
    for temperature in (1e-39, 1e-30, 1e-7):
        tiny = invoke(
            server,
            {
                "inputs": "def main(",
                "parameters": {"max_new_tokens": 8, "seed": 5, "temperature": temperature},
            },
        )
        assert tiny.status_code == 200 and tiny.json() == greedy, temperature


def test_custom_attributes_over_sagemaker_s_1024_characters_are_refused(server):
    response = invoke(server, {"inputs": "a"}, headers={"X-Amzn-SageMaker-Custom-Attributes": "k" * 1025})
    assert response.status_code == 400 and "limit is 1024" in response.json()["error"]
    assert "X-Amzn-SageMaker-Custom-Attributes" not in response.headers  # never echoed
    assert (
        invoke(
            server,
            {"inputs": "a", "parameters": {"max_new_tokens": 1}},
            headers={"X-Amzn-SageMaker-Custom-Attributes": "k" * 1024},
        ).status_code
        == 200
    )


def _partial_request(server: Server, body: bytes, declared: int) -> socket.socket:
    """A raw connection that sends the headers and only part of the body it declares."""
    host, port = server.url.removeprefix("http://").split(":")
    connection = socket.create_connection((host, int(port)), timeout=10)
    connection.sendall(
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {declared}\r\n\r\n".encode()
        + body
    )
    return connection


def _read_response(connection: socket.socket) -> str:
    """A whole HTTP response: the headers, then as many body bytes as they declare (the server may send the
    two in separate packets, so one recv is not enough)."""
    received = b""
    while True:
        head, ended, body = received.partition(b"\r\n\r\n")
        if ended:
            lengths = [
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ]
            if len(body) >= (lengths[0] if lengths else 0):
                return received.decode()
        chunk = connection.recv(65536)
        if not chunk:
            return received.decode()
        received += chunk


def test_a_body_held_open_half_sent_is_answered_408_within_the_body_timeout(server):
    started = time.monotonic()
    with _partial_request(server, b'{"inputs": ', declared=100) as connection:
        answer = _read_response(connection)
    assert answer.startswith("HTTP/1.1 408 ") and '"error_type":"request_timeout"' in answer
    assert BODY_TIMEOUT_S <= time.monotonic() - started < BODY_TIMEOUT_S + 5
    assert_healthy(server)


def test_a_client_that_leaves_mid_body_is_one_info_line_not_a_traceback(server):
    before = server.log().count("\n")
    _partial_request(server, b'{"inputs": ', declared=100).close()
    deadline = time.monotonic() + 10
    while "client disconnected before sending its whole request body" not in server.log():
        assert time.monotonic() < deadline, server.log()[-2000:]
        time.sleep(0.05)
    assert_healthy(server)
    new_lines = server.log().splitlines()[before:]
    assert not [line for line in new_lines if "Traceback" in line or "ERROR" in line], new_lines


def test_many_concurrent_clients_are_all_answered_while_ping_stays_up(server):
    """32 clients at once (all slots and the whole queue), mixed prompts and lengths; /ping answers throughout."""

    async def run() -> tuple[list[httpx.Response], list[int]]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            calls = [
                client.post(
                    "/invocations",
                    json={
                        "inputs": f"def f{i}(" + "x, " * (i % 7),
                        "parameters": {"max_new_tokens": 8 + i % 9},
                    },
                )
                for i in range(SLOTS + QUEUE)
            ]
            answers = asyncio.gather(*calls)
            pings = []
            while not answers.done():
                pings.append((await client.get("/ping", timeout=2)).status_code)
                await asyncio.sleep(0.01)
            return await answers, pings

    responses, pings = asyncio.run(run())
    assert [r.status_code for r in responses] == [200] * len(responses)
    assert all(r.json()[0]["generated_text"] for r in responses)
    assert pings and set(pings) == {200}
    # Continuous batching must not change what a request generates.
    alone = invoke(server, {"inputs": "def f5(" + "x, " * 5, "parameters": {"max_new_tokens": 8 + 5}})
    assert responses[5].json() == alone.json()


def test_json_lines_answer_one_line_per_request(server):
    """Batch transform's MultiRecord strategy with SplitType Line sends several requests in one body."""
    lines = [{"inputs": "def f(", "parameters": {"max_new_tokens": 5}}, {"inputs": ["a", "b"]}]
    body = "\n".join(json.dumps(line) for line in lines) + "\n"
    response = httpx.post(
        f"{server.url}/invocations",
        content=body,
        timeout=60,
        headers={"Content-Type": "application/jsonlines"},
    )
    assert response.status_code == 200 and response.headers["content-type"] == "application/jsonlines"
    answers = [json.loads(line) for line in response.text.splitlines()]
    assert answers == [invoke(server, line).json() for line in lines]
    refused = httpx.post(
        f"{server.url}/invocations",
        content=body + "{oops\n",
        timeout=60,
        headers={"Content-Type": "application/jsonlines"},
    )
    assert refused.status_code == 400 and refused.json()["error"].startswith("line 3:")


def test_execution_parameters_for_batch_transform(server):
    response = httpx.get(f"{server.url}/execution-parameters", timeout=2)
    assert response.json() == {
        "MaxConcurrentTransforms": SLOTS,
        "BatchStrategy": "SINGLE_RECORD",
        "MaxPayloadInMB": 6,
    }


@pytest.fixture
def own_server(tiny_training_run, tmp_path, compile_cache):
    """A server of the test's own (the session's keeps serving the other tests)."""
    with running_server(tiny_training_run.root, tmp_path / "serve.log", compile_cache) as started:
        yield started


def test_sigterm_stops_listening_and_finishes_requests_in_flight(own_server, tiny_training_run):
    """SIGTERM while streams are mid-generation; each still ends with its final event."""
    server = own_server
    context = read_model_config(tiny_training_run.model_dir).max_seq_len
    results: dict[int, list[dict]] = {}
    first_events = threading.Barrier(4)

    def stream(i: int) -> None:
        payload = {"inputs": f"def g{i}(", "parameters": {"max_new_tokens": context - 8}, "stream": True}
        with httpx.stream("POST", f"{server.url}/invocations", json=payload, timeout=60) as response:
            lines = response.iter_lines()
            events = []
            for line in lines:
                if line.startswith("data:"):
                    events.append(json.loads(line[5:]))
                    break
            first_events.wait(timeout=30)
            events += [json.loads(line[5:]) for line in lines if line.startswith("data:")]
            results[i] = events

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    first_events.wait(timeout=30)
    server.process.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(timeout=60)
    assert server.process.wait(timeout=30) in (0, -signal.SIGTERM)
    assert sorted(results) == [0, 1, 2]
    for events in results.values():
        assert events[-1]["generated_text"] is not None, "a stream was cut off"
        assert events[-1]["details"]["generated_tokens"] == len(events)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.url}/ping", timeout=2)
    assert "Shutting down" in server.log()


def test_huggingface_hub_s_inference_client_reads_tgi_answers_streams_and_details(server):
    client = InferenceClient(model=f"{server.url}/invocations", timeout=60)
    answer = client.text_generation("def main(", max_new_tokens=6, details=True)
    assert answer.details.generated_tokens == len(answer.details.tokens) <= 6
    assert answer.generated_text == "".join(t.text for t in answer.details.tokens if not t.special)
    streamed = list(client.text_generation("def main(", max_new_tokens=6, stream=True))
    assert "".join(streamed) == answer.generated_text


def metric_samples(server) -> dict[tuple[str, tuple], float]:
    response = httpx.get(f"{server.url}/metrics", timeout=10)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def test_metrics_count_what_a_burst_sent_and_the_log_carries_one_line_per_request(server):
    """12 concurrent requests of 5 tokens and 2 refusals: /metrics and the stdout lines agree with them."""
    before = metric_samples(server)
    lines_before = server.log().count('"event":"jax_llm.request"')

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            sends = [
                client.post(
                    "/invocations",
                    json={
                        "inputs": f"x{i} = ",
                        "parameters": {"max_new_tokens": 5, "do_sample": True, "seed": i},
                    },
                )
                for i in range(12)
            ]
            sends += [client.post("/invocations", json={"inputs": ""}) for _ in range(2)]
            return await asyncio.gather(*sends)

    responses = asyncio.run(burst())
    assert [r.status_code for r in responses] == [200] * 12 + [422] * 2
    generated = sum(int(r.headers["x-generated-tokens"]) for r in responses[:12])
    after = metric_samples(server)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    finished = sum(
        v - before.get(k, 0.0) for k, v in after.items() if k[0] == "jax_llm_requests_finished_total"
    )
    assert finished == 12
    assert delta("jax_llm_request_generation_tokens_sum") == generated
    assert delta("jax_llm_time_to_first_token_seconds_count") == 12
    assert delta("jax_llm_http_requests_total", api="tgi", status="200") == 12
    assert delta("jax_llm_http_requests_total", api="tgi", status="422") == 2
    assert after[("jax_llm_slots", ())] == SLOTS
    assert after[("jax_llm_slots_in_use", ())] == 0 and after[("jax_llm_requests_waiting", ())] == 0
    deadline = time.monotonic() + 5
    while server.log().count('"event":"jax_llm.request"') < lines_before + 12 and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = [
        json.loads(line)
        for line in server.log().splitlines()
        if line.startswith('{"event":"jax_llm.request"')
    ]
    assert len(lines) == lines_before + 12
    assert sum(line["generated_tokens"] for line in lines[-12:]) == generated
    assert all(line["ttft_ms"] >= line["queue_ms"] >= 0 for line in lines[-12:])
