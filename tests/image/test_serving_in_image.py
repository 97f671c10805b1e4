"""An endpoint in a container of the image: model.tar.gz unpacked, `serve` on 8080 published, SageMaker's calls."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from local_mode.endpoint import LocalEndpoint

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def endpoint(image, trained_in_image, tmp_path_factory):
    """The image's `serve` on the trained model; yields (endpoint, the first /ping answer) once healthy."""
    with LocalEndpoint(
        trained_in_image.result.model_archive,
        tmp_path_factory.mktemp("image-endpoint"),
        engine=image,
        log=lambda line: None,
    ) as served:
        first = None
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            assert served.process.poll() is None, "\n".join(served.lines[-30:])
            try:
                answer = httpx.get(f"{served.url}/ping", timeout=2)
            except httpx.TransportError:  # the container is starting; the port is not forwarded yet
                time.sleep(0.05)
                continue
            first = first or answer
            if answer.status_code == 200:
                break
            time.sleep(0.2)
        yield served, first
        served.close()
        assert served.process.returncode == 0, "\n".join(served.lines[-30:])  # SIGTERM: drained, exit 0


def test_ping_is_503_while_the_model_loads_then_200(endpoint) -> None:
    served, first = endpoint
    assert first.status_code == 503 and first.json()["error_type"] == "not_ready"
    assert httpx.get(f"{served.url}/ping", timeout=2).status_code == 200


def test_a_tgi_request_is_answered_in_tgi_s_schema(endpoint) -> None:
    served, _ = endpoint
    answer = httpx.post(
        f"{served.url}/invocations",
        timeout=60,
        headers={"X-Amzn-SageMaker-Custom-Attributes": "trace=1"},
        json={"inputs": "def ", "parameters": {"max_new_tokens": 8, "details": True}},
    )
    assert answer.status_code == 200, answer.text
    (generated,) = answer.json()
    assert isinstance(generated["generated_text"], str)
    assert generated["details"]["generated_tokens"] == len(generated["details"]["tokens"]) > 0
    assert answer.headers["X-Amzn-SageMaker-Custom-Attributes"] == "trace=1"


def test_a_stream_is_server_sent_events_ending_with_the_whole_text(endpoint) -> None:
    served, _ = endpoint
    events = []
    with httpx.stream(
        "POST",
        f"{served.url}/invocations",
        timeout=60,
        json={
            "inputs": "class ",
            "parameters": {"max_new_tokens": 6, "do_sample": True, "seed": 3},
            "stream": True,
        },
    ) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith(
            "text/event-stream"
        )
        events = [
            json.loads(line[len("data:") :]) for line in response.iter_lines() if line.startswith("data:")
        ]
    assert 1 <= len(events) <= 6  # one event per token; end-of-text may come first
    assert all(e["generated_text"] is None for e in events[:-1])
    assert events[-1]["generated_text"] == "".join(e["token"]["text"] for e in events)


def test_a_malformed_request_is_a_json_400_and_the_endpoint_keeps_serving(endpoint) -> None:
    served, _ = endpoint
    refused = httpx.post(
        f"{served.url}/invocations",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert refused.status_code == 400 and refused.json()["error_type"] == "malformed_request"
    assert httpx.get(f"{served.url}/ping", timeout=2).status_code == 200


def test_no_generated_body_gets_a_5xx_or_stops_the_image_s_server(endpoint) -> None:
    """tests/containers/serving's property test against the image's server (same bodies, same checks)."""
    from tests.containers.serving.test_property_bodies import run_generation_properties

    served, _ = endpoint
    run_generation_properties(served.url)


def test_the_official_openai_client_talks_to_the_container(endpoint) -> None:
    served, _ = endpoint
    client = openai.OpenAI(base_url=f"{served.url}/v1", api_key="unused", max_retries=0, timeout=60)
    chat = client.chat.completions.create(model="jax-llm", messages=[{"role": "user", "content": "def "}],
                                          max_tokens=6, temperature=0)
    assert chat.choices[0].message.role == "assistant" and 0 < chat.usage.completion_tokens <= 6
    chunks = list(client.completions.create(model="jax-llm", prompt="class ", max_tokens=6, temperature=0,
                                            stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and 0 < chunks[-1].usage.completion_tokens <= 6
    assert [c.choices[0].finish_reason for c in chunks[:-1]][-1] in ("length", "stop")
    refused = httpx.post(f"{served.url}/invocations", json={"prompt": "a", "n": 3}, timeout=10)
    assert refused.status_code == 422 and refused.json()["error"]["param"] == "n"


def test_token_metrics_leave_the_container_on_metrics_and_stdout(endpoint) -> None:
    served, _ = endpoint
    httpx.post(f"{served.url}/invocations", json={"inputs": "x = ", "parameters": {"max_new_tokens": 3}},
               timeout=60)
    text = httpx.get(f"{served.url}/metrics", timeout=10).text
    finished = sum(s.value for family in text_string_to_metric_families(text)
                   if family.name == "jax_llm_requests_finished" for s in family.samples
                   if s.name.endswith("_total"))
    assert finished >= 1
    deadline = time.monotonic() + 10
    while not any(line.startswith('[serve] {"event":"jax_llm.request"') for line in served.lines):
        assert time.monotonic() < deadline, "no metric line on the container's stdout"
        time.sleep(0.1)
