"""An endpoint in a container of the image: model.tar.gz unpacked, `serve` on 8080 published, SageMaker's
calls; the same model split over a container's 4 devices, answering as the endpoint does; and a batch
transform job over the same model, uncompressed and with its compiled programs added by the image's
compile-cache job, in another container, answering as the endpoint does."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from jax_llm.contract.serving import COMPILE_CACHE_DIR
from local_mode.endpoint import LocalEndpoint
from local_mode.packaging import unpack_model
from local_mode.runner import run_processing
from local_mode.transform import run_transform
from tests.support import write_stdlib_corpus

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
    chat = client.chat.completions.create(
        model="jax-llm", messages=[{"role": "user", "content": "def "}], max_tokens=6, temperature=0
    )
    assert chat.choices[0].message.role == "assistant" and 0 < chat.usage.completion_tokens <= 6
    chunks = list(
        client.completions.create(
            model="jax-llm",
            prompt="class ",
            max_tokens=6,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].choices == [] and 0 < chunks[-1].usage.completion_tokens <= 6
    assert [c.choices[0].finish_reason for c in chunks[:-1]][-1] in ("length", "stop")
    refused = httpx.post(f"{served.url}/invocations", json={"prompt": "a", "n": 3}, timeout=10)
    assert refused.status_code == 422 and refused.json()["error"]["param"] == "n"


def test_token_metrics_leave_the_container_on_metrics_and_stdout(endpoint) -> None:
    served, _ = endpoint
    httpx.post(
        f"{served.url}/invocations", json={"inputs": "x = ", "parameters": {"max_new_tokens": 3}}, timeout=60
    )
    text = httpx.get(f"{served.url}/metrics", timeout=10).text
    finished = sum(
        s.value
        for family in text_string_to_metric_families(text)
        if family.name == "jax_llm_requests_finished"
        for s in family.samples
        if s.name.endswith("_total")
    )
    assert finished >= 1
    deadline = time.monotonic() + 10
    while not any(line.startswith('[serve] {"event":"jax_llm.request"') for line in served.lines):
        assert time.monotonic() < deadline, "no metric line on the container's stdout"
        time.sleep(0.1)


def _greedy(url: str, prompt: str) -> list[int]:
    """The token ids of a greedy answer (`details`), which two servers must agree on one for one."""
    payload = {"inputs": prompt, "parameters": {"max_new_tokens": 24, "details": True}}
    answer = httpx.post(f"{url}/invocations", json=payload, timeout=120)
    assert answer.status_code == 200, answer.text
    return [token["id"] for token in answer.json()[0]["details"]["tokens"]]


def test_tensor_parallel_over_four_devices_of_a_container_answers_token_for_token_like_one(
    endpoint, image, trained_in_image, tmp_path
) -> None:
    """The endpoint's container given 4 CPU devices and JAX_LLM_TENSOR_PARALLEL=4 (the container's own
    variables, as a SageMaker Model's Environment sets them) splits the model and answers the same tokens."""
    served, _ = endpoint
    prompts = ["def main(", "import os\n", "class Parser:\n    def __init__(self", "    return "]
    expected = [_greedy(served.url, prompt) for prompt in prompts]
    environment = {
        "JAX_LLM_TENSOR_PARALLEL": "4",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
        # One slot: the batch-1 programs these one-at-a-time requests run, compiled in a third of the time.
        "JAX_LLM_MAX_BATCH": "1",
    }
    with LocalEndpoint(
        trained_in_image.result.model_archive,
        tmp_path / "split",
        engine=image,
        environment=environment,
        log=lambda line: None,
    ) as split:
        split.wait_until_healthy(timeout_s=300)
        got = [_greedy(split.url, prompt) for prompt in prompts]
    log = "\n".join(split.lines)
    assert split.process.returncode == 0, log[-3000:]  # SIGTERM: drained, exit 0
    assert "tensor parallel over 4 devices: " in log, log[-3000:]
    said = log.split("tensor parallel over 4 devices: ")[1].split(" weight bytes split")[0]
    split_bytes, total = (int(x) for x in said.split(" of "))
    assert split_bytes > total / 2  # the matrices of every block, not only a token gesture
    assert got == expected and all(expected)


def test_a_transform_job_over_an_uncompressed_model_answers_each_line_as_the_endpoint_does(
    endpoint, image, trained_in_image, tmp_path
) -> None:
    """100 greedy prompts through `local_mode transform` in the image, its model an uncompressed directory
    (a ModelDataSource S3 prefix, no unpack) to which the image's compile-cache job first added the compiled
    serving programs: the transform's container reads every program instead of compiling it, and output line
    i equals the endpoint's answer to prompt i."""
    served, _ = endpoint
    text = write_stdlib_corpus(tmp_path / "corpus.txt").read_text()
    prompts = [text[i * 997 : i * 997 + 8 + i % 40] for i in range(100)]  # 8 to 47 characters each
    requests = [{"inputs": p, "parameters": {"max_new_tokens": 6}} for p in prompts]
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in requests))
    model_dir = unpack_model(trained_in_image.result.model_archive, tmp_path / "s3").model  # as S3 holds them
    compiled = run_processing(
        tmp_path / "work",
        "compile-cache",
        inputs={"model": model_dir},
        outputs={"compile_cache": model_dir / COMPILE_CACHE_DIR},
        arguments=["compile-cache"],
        engine=image,
        log=lambda line: None,
    )
    assert compiled.ok, compiled.log[-3000:]

    lines: list[str] = []
    result = run_transform(
        model_dir,
        tmp_path / "prompts.jsonl",
        tmp_path / "out",
        tmp_path / "job",
        engine=image,
        log=lines.append,
    )

    assert result.output == tmp_path / "out" / "prompts.jsonl.out" and result.records == 100
    answers = [json.loads(line) for line in result.output.read_text().splitlines()]
    expected = [httpx.post(f"{served.url}/invocations", json=r, timeout=60).json() for r in requests]
    assert answers == expected
    assert result.concurrency > 1  # the container's /execution-parameters filled its slots
    [startup] = [json.loads(line.split("] ", 1)[1]) for line in lines if '"event":"jax_llm.startup"' in line]
    assert startup["cached_programs"] == startup["programs"] > 0, "\n".join(lines[-30:])
