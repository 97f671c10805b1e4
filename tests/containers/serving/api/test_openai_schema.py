"""OpenAI's schemas without a model: what a body means, what is refused (naming the parameter), the chunks."""

from __future__ import annotations

import json

import pytest

from jax_llm.serving.api.openai_schema import (
    CHAT,
    COMPLETION,
    ChunkWriter,
    error_body,
    kind_of,
    parse_chat,
    parse_completion,
    response,
)
from jax_llm.serving.engine.types import Generation, RequestError, RequestStats, Token


def render(messages):
    return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"


def generation(*pieces: str, reason: str = "length") -> Generation:
    tokens = tuple(Token(i, piece, -0.5 * (i + 1), False) for i, piece in enumerate(pieces))
    stats = RequestStats(
        prompt_tokens=7, generated_tokens=len(tokens), queue_s=0.0, ttft_s=0.01, tpot_s=0.01, total_s=0.1
    )
    return Generation("".join(pieces), tokens, reason, None, stats)


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, CHAT),
        ({"prompt": "def f("}, COMPLETION),
        ({"inputs": "def f("}, None),
        ({"inputs": "x", "prompt": "y"}, None),  # TGI's field wins: a TGI body is answered exactly as before
        ([1, 2], None),
    ],
)
def test_the_body_s_shape_decides_the_schema(body, kind):
    assert kind_of(body) == kind


def test_a_completion_maps_onto_the_engine_s_parameters():
    parsed = parse_completion(
        {
            "model": "jax-llm",
            "prompt": ["a", "b"],
            "max_tokens": 5,
            "temperature": 0.7,
            "top_p": 0.9,
            "stop": "\n",
            "seed": 3,
            "n": 1,
            "presence_penalty": 0,
        }
    )
    params = parsed.generate.params
    assert parsed.generate.inputs == ("a", "b") and parsed.generate.batched
    assert (params.max_new_tokens, params.temperature, params.top_p, params.stop, params.seed) == (
        5,
        0.7,
        0.9,
        ("\n",),
        3,
    )
    assert params.sampling


def test_temperature_follows_openai_default_sampling_zero_greedy():
    assert parse_completion({"prompt": "a"}).generate.params.sampling  # OpenAI's default temperature is 1
    greedy = parse_completion({"prompt": "a", "temperature": 0, "top_p": 0.5}).generate.params
    assert not greedy.sampling and greedy.top_p is None


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": "a", "n": 2}, "n"),
        ({"prompt": "a", "best_of": 3}, "best_of"),
        ({"prompt": "a", "presence_penalty": 0.5}, "presence_penalty"),
        ({"prompt": "a", "frequency_penalty": 1}, "frequency_penalty"),
        ({"prompt": "a", "logit_bias": {"50256": -100}}, "logit_bias"),
        ({"prompt": "a", "suffix": "end"}, "suffix"),
        ({"prompt": "a", "logprobs": 2}, "logprobs"),
        ({"prompt": "a", "echo": True, "logprobs": 0}, "echo"),
        ({"prompt": "a", "temperature": 2.5}, "temperature"),
        ({"prompt": "a", "top_p": 0}, "top_p"),
        ({"prompt": "a", "max_tokens": 0}, "max_tokens"),
        ({"prompt": "a", "stream_options": {"include_usage": True}}, "stream_options"),
        ({"prompt": [1, 2, 3]}, "prompt"),
        ({"prompt": ["a", "b"], "stream": True}, "prompt"),
        ({"prompt": "a", "guided_json": {}}, "guided_json"),
        ({"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function"}]}, "tools"),
        ({"messages": [{"role": "user", "content": "hi"}], "top_logprobs": 3}, "top_logprobs"),
        (
            {"messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "json_object"}},
            "response_format",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
            "messages",
        ),
        ({"messages": []}, "messages"),
        (
            {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "max_completion_tokens": 4},
            "max_completion_tokens",
        ),
    ],
)
def test_what_is_not_implemented_is_refused_naming_the_parameter(body, param):
    with pytest.raises(RequestError) as caught:
        parse_chat(body, render) if "messages" in body else parse_completion(body)
    assert caught.value.status == 422 and caught.value.param == param
    assert param.split(".")[0] in caught.value.message
    error = error_body(caught.value)["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param


def test_off_values_clients_fill_in_are_accepted():
    parse_chat(
        {
            "messages": [{"role": "user", "content": "hi"}],
            "n": 1,
            "frequency_penalty": 0,
            "presence_penalty": 0.0,
            "logit_bias": {},
            "tools": None,
            "top_logprobs": 0,
            "user": "u-1",
            "response_format": {"type": "text"},
            "logprobs": False,
        },
        render,
    )


def test_chat_renders_text_parts_through_the_template():
    parsed = parse_chat(
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "Hello "}, {"type": "text", "text": "there"}],
                },
            ],
            "max_completion_tokens": 8,
        },
        render,
    )
    assert parsed.generate.inputs == ("system: Be brief.\nuser: Hello there\nassistant:",)
    assert parsed.generate.params.max_new_tokens == 8 and parsed.generate.names.inputs == "messages"


def test_a_completion_answer_has_choices_finish_reasons_and_usage():
    parsed = parse_completion({"prompt": ["a", "b"], "echo": True})
    generations = [generation("x", "y", reason="eos_token"), generation("z", reason="time_limit")]
    answer = response(parsed, generations, "jax-llm")
    assert answer["object"] == "text_completion" and answer["model"] == "jax-llm"
    assert [c["text"] for c in answer["choices"]] == ["axy", "bz"]
    assert [c["finish_reason"] for c in answer["choices"]] == ["stop", "length"]
    assert answer["usage"] == {"prompt_tokens": 14, "completion_tokens": 3, "total_tokens": 17}


def test_logprobs_are_the_sampled_tokens_own():
    parsed = parse_completion({"prompt": "a", "logprobs": 0})
    logprobs = response(parsed, [generation("x", "yz")], "m")["choices"][0]["logprobs"]
    assert logprobs == {
        "tokens": ["x", "yz"],
        "token_logprobs": [-0.5, -1.0],
        "top_logprobs": None,
        "text_offset": [0, 1],
    }
    chat = parse_chat({"messages": [{"role": "user", "content": "a"}], "logprobs": True}, render)
    content = response(chat, [generation("x")], "m")["choices"][0]["logprobs"]["content"]
    assert content == [{"token": "x", "logprob": -0.5, "bytes": [120], "top_logprobs": []}]


def events(data: bytes) -> list:
    assert data.endswith(b"\n\n")
    lines = [line for line in data.decode().split("\n\n") if line]
    assert all(line.startswith("data: ") for line in lines)
    return [line[6:] if line == "data: [DONE]" else json.loads(line[6:]) for line in lines]


def test_chat_chunks_start_with_the_role_and_end_with_usage_then_done():
    parsed = parse_chat(
        {
            "messages": [{"role": "user", "content": "a"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        },
        render,
    )
    writer = ChunkWriter(parsed, "m")
    final = generation("x", "y", reason="stop_sequence")
    stream = events(writer.start() + writer.tokens([final.tokens[0]]) + writer.end([final.tokens[1]], final))
    assert [e["choices"][0]["delta"] for e in stream[:3]] == [
        {"role": "assistant", "content": ""},
        {"content": "x"},
        {"content": "y"},
    ]
    assert stream[2]["choices"][0]["finish_reason"] == "stop"
    assert stream[3]["choices"] == [] and stream[3]["usage"]["completion_tokens"] == 2
    assert stream[4] == "[DONE]"
    assert {e["object"] for e in stream[:4]} == {"chat.completion.chunk"}
    assert len({e["id"] for e in stream[:4]}) == 1


def test_special_tokens_are_not_text_in_a_stream():
    parsed = parse_completion({"prompt": "a", "stream": True})
    writer = ChunkWriter(parsed, "m")
    eos = Token(0, "<|endoftext|>", -0.1, True)
    final = Generation("", (eos,), "eos_token", None)
    [last, done] = events(writer.end([eos], final))
    assert last["choices"][0]["text"] == "" and last["choices"][0]["finish_reason"] == "stop"
    assert done == "[DONE]"
