"""TGI request parsing and the response shapes, without a model."""

from __future__ import annotations

import json

import pytest

from jax_llm.serving.api.tgi_schema import decode_body, generation_json, parse_request, stream_event
from jax_llm.serving.engine.types import (
    GREEDY_BELOW_TEMPERATURE,
    Generation,
    GenerationParams,
    RequestError,
    Token,
)


def parse(payload) -> object:
    return parse_request(json.dumps(payload).encode())


def test_full_request_is_typed():
    req = parse(
        {
            "inputs": "hi",
            "stream": True,
            "parameters": {
                "max_new_tokens": 5,
                "temperature": 0.7,
                "top_k": 10,
                "top_p": 0.9,
                "do_sample": True,
                "stop": ["\n"],
                "seed": 2**63,
                "return_full_text": True,
                "details": True,
                "truncate": 8,
            },
        }
    )
    assert req.inputs == ("hi",) and not req.batched and req.stream
    assert req.params == GenerationParams(5, 0.7, 10, 0.9, True, ("\n",), 2**63, True, True, 8)


def test_list_inputs_and_defaults():
    req = parse({"inputs": ["a", "b"]})
    assert req.inputs == ("a", "b") and req.batched and not req.stream
    assert req.params == GenerationParams() and not req.params.sampling


def test_nulls_and_off_values_of_unsupported_parameters_are_accepted():
    """huggingface_hub's InferenceClient sends every parameter, mostly null or false."""
    req = parse(
        {
            "inputs": "a",
            "parameters": {
                "max_new_tokens": None,
                "watermark": False,
                "best_of": None,
                "decoder_input_details": False,
                "stop": "\n",
            },
        }
    )
    assert req.params.max_new_tokens is None and req.params.stop == ("\n",)


@pytest.mark.parametrize(
    "params, sampling",
    [
        ({}, False),
        ({"do_sample": True}, True),
        ({"temperature": 1.0}, False),
        ({"temperature": 0.5}, True),
        ({"top_k": 5}, True),
        ({"top_p": 0.5}, True),
    ],
)
def test_any_sampling_warper_turns_sampling_on(params, sampling):
    assert parse({"inputs": "a", "parameters": params}).params.sampling is sampling


@pytest.mark.parametrize(
    "payload, status, field",
    [
        (b"{", 400, "JSON"),
        (b"\xff\xfe", 400, "JSON"),
        (b'"text"', 422, "inputs"),
        (b'{"inputs": "a", "parameters": [1]}', 422, "parameters"),
        (b'{"inputs": "a", "parameters": {"do_sample": 1}}', 422, "do_sample"),
        (b'{"inputs": "a", "parameters": {"max_new_tokens": true}}', 422, "max_new_tokens"),
        (b'{"inputs": "a", "parameters": {"temperature": -1}}', 422, "temperature"),
        (b'{"inputs": "a", "parameters": {"top_p": 0}}', 422, "top_p"),
        (b'{"inputs": "a", "parameters": {"truncate": 0}}', 422, "truncate"),
        (b'{"inputs": "a", "parameters": {"stop": ["1","2","3","4","5","6","7","8","9"]}}', 422, "stop"),
        (b'{"inputs": "a", "stream": "yes"}', 422, "stream"),
    ],
)
def test_bad_requests_name_the_field(payload, status, field):
    with pytest.raises(RequestError) as refused:
        parse_request(payload)
    assert refused.value.status == status and field in refused.value.message
    assert set(refused.value.body()) == {"error", "error_type"}


TOKENS = (Token(5, "Hel", -0.5, False), Token(6, "lo", -1.0, False))


def test_response_entry_has_details_only_when_asked_or_cut_by_time():
    done = Generation("Hello", TOKENS, "length", None)
    assert generation_json(done, "Say: ", GenerationParams()) == {"generated_text": "Hello"}
    assert generation_json(done, "Say: ", GenerationParams(return_full_text=True)) == {
        "generated_text": "Say: Hello"
    }
    details = generation_json(done, "p", GenerationParams(details=True))["details"]
    assert details["generated_tokens"] == 2 and details["tokens"][0] == {
        "id": 5,
        "text": "Hel",
        "logprob": -0.5,
        "special": False,
    }
    cut = generation_json(Generation("Hello", TOKENS, "time_limit", 3), "p", GenerationParams())
    assert cut["details"]["finish_reason"] == "time_limit"


def test_stream_events_are_sse_lines_with_the_text_in_the_last():
    middle = stream_event(TOKENS[0])
    last = stream_event(TOKENS[1], Generation("Hello", TOKENS, "length", None), "Hello")
    assert middle.startswith(b"data:") and middle.endswith(b"\n\n") and last.endswith(b"\n\n")
    assert json.loads(middle[5:]) == {"token": TOKENS[0].as_json(), "generated_text": None}
    assert json.loads(last[5:])["generated_text"] == "Hello"
    assert json.loads(last[5:])["details"]["finish_reason"] == "length"


def test_temperatures_below_the_floor_are_greedy_even_when_sampling_is_asked_for():
    assert (
        GenerationParams(temperature=GREEDY_BELOW_TEMPERATURE / 10, do_sample=True, top_k=5).sampling is False
    )
    assert GenerationParams(temperature=GREEDY_BELOW_TEMPERATURE).sampling is True
    assert GenerationParams(temperature=1e-39).sampling is False  # float32 cannot scale logits by its inverse


def test_top_p_1_is_off_and_does_not_turn_sampling_on():
    """TGI's rule: a warper at its "off" value (top_p 1.0) does not switch sampling on."""
    assert not parse_request(b'{"inputs": "a", "parameters": {"top_p": 1.0}}').params.sampling
    assert parse_request(b'{"inputs": "a", "parameters": {"top_p": 0.9}}').params.sampling


@pytest.mark.parametrize(
    "body, says",
    [
        (b'{"inputs": "a", "max_new_tokens": 2}', "parameters.max_new_tokens"),
        (b'{"inputs": "a", "parameters": {"top_k": 2147483648}}', "2147483647"),
        (b'{"inputs": "a", "parameters": {"temperature": 1e39}}', "float32"),
        (b'{"inputs": "a", "parameters": {"temperature": 1' + b"0" * 400 + b"}}", "digits"),
        (b'{"inputs": "a", "parameters": {"stop": ["' + b"s" * 513 + b'"]}}', "at most 512"),
    ],
)
def test_values_the_engine_cannot_hold_are_422_naming_field_and_limit(body, says):
    with pytest.raises(RequestError) as refused:
        parse_request(body)
    assert refused.value.status == 422 and says in refused.value.message
    assert len(refused.value.message) < 400


@pytest.mark.parametrize(
    "body", [b'{"inputs": "\\udc80"}', b'{"inputs": "a", "parameters": {"seed": 1' + b"0" * 4400 + b"}}"]
)
def test_a_lone_surrogate_or_an_integer_python_cannot_read_is_a_400(body):
    with pytest.raises(RequestError) as refused:
        decode_body(body)
    assert refused.value.status == 400
