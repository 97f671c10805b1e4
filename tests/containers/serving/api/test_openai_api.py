"""OpenAI's schema on the real server: the official `openai` client at /v1, raw bodies on /invocations."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

pytestmark = pytest.mark.slow

MODEL = "jax-llm"  # the server's default JAX_LLM_MODEL_NAME


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60)


def test_models_lists_the_one_served(client):
    assert [m.id for m in client.models.list().data] == [MODEL]


def test_a_completion_has_text_finish_reason_and_usage(client, server):
    completion = client.completions.create(model=MODEL, prompt="def main(", max_tokens=6, temperature=0)
    [choice] = completion.choices
    assert completion.object == "text_completion" and completion.model == MODEL
    assert choice.finish_reason in ("length", "stop") and choice.text
    assert completion.usage.completion_tokens <= 6
    usage = completion.usage
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    # The same greedy request in TGI's schema generates the same text.
    tgi = httpx.post(
        f"{server.url}/invocations",
        timeout=60,
        json={"inputs": "def main(", "parameters": {"max_new_tokens": 6}},
    ).json()
    assert tgi[0]["generated_text"] == choice.text


def test_streamed_completion_chunks_concatenate_to_the_whole_answer(client):
    whole = client.completions.create(model=MODEL, prompt="import os\n", max_tokens=8, temperature=0)
    stream = client.completions.create(
        model=MODEL,
        prompt="import os\n",
        max_tokens=8,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.choices[0].text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == whole.choices[0].finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_chat_answers_as_the_assistant_with_usage(client):
    messages = [{"role": "system", "content": "You write Python."}, {"role": "user", "content": "A loop?"}]
    chat = client.chat.completions.create(
        model=MODEL, messages=messages, max_completion_tokens=5, seed=7, temperature=0.8
    )
    again = client.chat.completions.create(
        model=MODEL, messages=messages, max_completion_tokens=5, seed=7, temperature=0.8
    )
    [choice] = chat.choices
    assert chat.object == "chat.completion" and choice.message.role == "assistant"
    assert choice.message.content == again.choices[0].message.content  # seeded sampling is reproducible
    assert 0 < chat.usage.completion_tokens <= 5
    assert chat.usage.prompt_tokens > 5  # the template's words count too


def test_streamed_chat_deltas_concatenate_to_the_whole_answer(client):
    messages = [{"role": "user", "content": "def f("}]
    whole = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=8, temperature=0)
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=messages, max_tokens=8, temperature=0, stream=True
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == whole.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason


def test_logprobs_of_the_sampled_tokens(client):
    chat = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "x = "}],
        max_tokens=4,
        temperature=0,
        logprobs=True,
    )
    content = chat.choices[0].logprobs.content
    assert len(content) == chat.usage.completion_tokens and all(t.logprob <= 0 for t in content)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": "a", "n": 2}, "n"),
        ({"prompt": "a", "presence_penalty": 1.0}, "presence_penalty"),
        ({"messages": [{"role": "user", "content": "a"}], "tools": [{"type": "function"}]}, "tools"),
        ({"messages": [{"role": "tool", "content": "42"}]}, "messages"),
        ({"prompt": "a", "max_tokens": 100000}, "max_tokens"),
    ],
)
def test_raw_openai_bodies_on_invocations_are_answered_or_refused_in_openai_s_shape(server, body, param):
    response = httpx.post(f"{server.url}/invocations", json=body, timeout=60)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error" and param in error["message"]
    assert httpx.get(f"{server.url}/ping", timeout=5).status_code == 200


def test_a_chat_body_on_invocations_is_answered_as_chat(server):
    response = httpx.post(
        f"{server.url}/invocations",
        timeout=60,
        json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3},
    )
    assert response.status_code == 200
    answer = response.json()
    assert answer["object"] == "chat.completion" and answer["usage"]["completion_tokens"] <= 3
    assert int(response.headers["x-generated-tokens"]) == answer["usage"]["completion_tokens"]


def test_a_streamed_completion_on_invocations_ends_with_done(server):
    with httpx.stream(
        "POST",
        f"{server.url}/invocations",
        timeout=60,
        json={"prompt": "for i in", "max_tokens": 4, "stream": True},
    ) as response:
        data = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert response.headers["content-type"].startswith("text/event-stream")
    assert data[-1] == "[DONE]" and json.loads(data[-2])["choices"][0]["finish_reason"] in ("length", "stop")


def test_the_official_client_sees_refusals_as_its_own_errors(client, server):
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        client.completions.create(model=MODEL, prompt="a", best_of=2)
    assert caught.value.body["param"] == "best_of"
    with pytest.raises(openai.NotFoundError) as missing:
        client.completions.create(model="gpt-4o", prompt="a")
    assert missing.value.body["param"] == "model" and MODEL in missing.value.body["message"]
    assert httpx.get(f"{server.url}/ping", timeout=5).status_code == 200
