"""TGI's request and response schema (what JumpStart and LMI clients send): parsing, validation, output.

Parsing never touches the model: it turns a request body into a typed `GenerateRequest` or raises a
`RequestError` whose status and message name the offending field. Limits that need the tokenizer
(prompt length against the context) are checked by the engine when it tokenizes.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from typing import Any

from jax_llm.serving.engine.limits import (
    MAX_STOP_CHARS,
    MAX_STOP_SEQUENCES,
    MAX_TEMPERATURE,
    MAX_TOP_K,
    SEED_BITS,
)
from jax_llm.serving.engine.types import (
    GenerateRequest,
    Generation,
    GenerationParams,
    RequestError,
    Token,
    validation_error,
)

# Parameters TGI clients commonly send at their "off" value (huggingface_hub fills every key). They are
# accepted when null/false/absent; any other value is refused, since ignoring it would change the output.
_UNSUPPORTED_PARAMETERS = (
    "best_of",
    "decoder_input_details",
    "frequency_penalty",
    "grammar",
    "repetition_penalty",
    "top_n_tokens",
    "typical_p",
    "watermark",
    "adapter_id",
)


def shown(value: object, chars: int = 64) -> str:
    """`value` as JSON text, cut to about `chars` characters: a refusal never echoes a huge value back."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"an integer of about {int(value.bit_length() * 0.30103)} digits"
    if isinstance(value, str) and len(value) > chars:
        return f"{json.dumps(value[:chars])}... ({len(value)} characters)"
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = type(value).__name__
    return text if len(text) <= chars else f"{text[:chars]}... ({len(text)} characters of JSON)"


_KNOWN_PARAMETERS = frozenset(field.name for field in dataclasses.fields(GenerationParams)) | frozenset(
    _UNSUPPORTED_PARAMETERS
)
_TGI_FIELDS = frozenset({"inputs", "parameters", "stream"})


def _check_type(name: str, value: Any, kind: type | tuple[type, ...], label: str) -> None:
    # bool is an int subclass in Python, but JSON true is never a number here.
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise validation_error(f"parameters.{name} must be {label}, got {shown(value)}", f"parameters.{name}")


def _out_of_range(name: str, value: Any, label: str) -> RequestError:
    return validation_error(f"parameters.{name} must be {label}, got {shown(value)}", f"parameters.{name}")


def _parse_params(raw: Any) -> GenerationParams:
    if raw is None:
        return GenerationParams()
    if not isinstance(raw, dict):
        raise validation_error("parameters must be a JSON object")
    values = {key: value for key, value in raw.items() if value is not None}
    for key in _UNSUPPORTED_PARAMETERS:
        if values.pop(key, False) is not False:
            raise validation_error(f"parameters.{key} is not supported by this server", f"parameters.{key}")
    unknown = sorted(set(values) - _KNOWN_PARAMETERS)
    if unknown:
        raise validation_error(
            f"parameters.{shown(unknown[0])} is not a known parameter; known: {sorted(_KNOWN_PARAMETERS)}",
            "parameters",
        )

    if "max_new_tokens" in values:
        _check_type("max_new_tokens", values["max_new_tokens"], int, "a positive integer")
        if values["max_new_tokens"] < 1:
            name = "parameters.max_new_tokens"
            raise validation_error(f"{name} must be at least 1", name)
    if "temperature" in values:
        _check_type("temperature", values["temperature"], (int, float), "a number")
        if not (0 < values["temperature"] <= MAX_TEMPERATURE):  # exact for huge ints too (no float())
            label = f"a number in (0, {MAX_TEMPERATURE:g}] (float32)"
            raise _out_of_range("temperature", values["temperature"], label)
        values["temperature"] = float(values["temperature"])
    if "top_k" in values:
        _check_type("top_k", values["top_k"], int, "a positive integer")
        if not (1 <= values["top_k"] <= MAX_TOP_K):
            raise _out_of_range("top_k", values["top_k"], f"an integer in [1, {MAX_TOP_K}] (int32)")
    if "top_p" in values:
        _check_type("top_p", values["top_p"], (int, float), "a number")
        if not (0 < values["top_p"] <= 1):
            raise _out_of_range("top_p", values["top_p"], "a number in (0, 1]")
        values["top_p"] = float(values["top_p"])
    if "seed" in values:
        _check_type("seed", values["seed"], int, "a non-negative integer")
        if not (0 <= values["seed"] < 2**SEED_BITS):
            raise _out_of_range("seed", values["seed"], f"an integer in [0, 2**{SEED_BITS})")
    if "truncate" in values:
        _check_type("truncate", values["truncate"], int, "a positive integer")
        if values["truncate"] < 1:
            raise validation_error("parameters.truncate must be at least 1", "parameters.truncate")
    for flag in ("do_sample", "return_full_text", "details"):
        if flag in values:
            _check_type(flag, values[flag], bool, "true or false")
    if "stop" in values:
        values["stop"] = stop_sequences(values["stop"], "parameters.stop")
    return GenerationParams(**values)


def decode_body(body: bytes) -> Any:
    """The JSON value of a request body (UTF-8); raises RequestError 400 when it is not JSON, or holds text
    that is not Unicode."""
    payload = decode_json(body)
    check_text(body, payload)
    return payload


def decode_json(body: bytes) -> Any:
    """The JSON value of a request body (UTF-8); raises RequestError 400 when it is not JSON."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RequestError(400, "malformed_request", f"request body is not valid JSON: {error}") from None
    except RecursionError:  # json's decoder recurses once per nesting level
        raise RequestError(
            400, "malformed_request", "request body is nested too deeply to be a request"
        ) from None
    except ValueError:  # an integer longer than Python converts
        raise RequestError(
            400,
            "malformed_request",
            f"request body holds an integer of more than {sys.get_int_max_str_digits()} digits",
        ) from None
    return payload


def check_text(body: bytes, payload: Any) -> None:
    """RequestError 400 when the decoded body holds a string that is not Unicode text: JSON may spell a lone
    UTF-16 surrogate as an escape, which Python decodes into a str no UTF-8 encoder (nor tokenizer) takes."""
    if _SURROGATE_ESCAPE.search(body) and _holds_surrogate(payload):
        raise RequestError(
            400,
            "malformed_request",
            "request body holds a \\u escape of a lone UTF-16 surrogate (\\ud800-\\udfff): not Unicode text",
        )


# Only a body with a surrogate's escape is walked, iteratively (it may be nested deep).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _holds_surrogate(payload: Any) -> bool:
    pending = [payload]
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return False


def stop_sequences(stop: Any, name: str) -> tuple[str, ...]:
    """A stop string or list of them, checked against the engine's limits; RequestError 422 naming `name`."""
    stop = [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
        raise validation_error(
            f"{name} must be a non-empty string or a list of them, got {shown(stop)}", name
        )
    if len(stop) > MAX_STOP_SEQUENCES:
        raise validation_error(f"{name} has {len(stop)} sequences; at most {MAX_STOP_SEQUENCES}", name)
    for s in stop:
        if len(s) > MAX_STOP_CHARS:
            raise validation_error(
                f"{name} holds a sequence of {len(s)} characters; at most {MAX_STOP_CHARS} each", name
            )
    return tuple(stop)


def parse_request(body: bytes) -> GenerateRequest:
    """Parses a TGI request body into a `GenerateRequest`; raises RequestError (400/422)."""
    return parse_tgi(decode_body(body))


def parse_tgi(payload: Any) -> GenerateRequest:
    """A decoded TGI body (`inputs`, `parameters`, `stream`) as a `GenerateRequest`; RequestError 422."""
    if not isinstance(payload, dict):
        raise validation_error('request body must be a JSON object with an "inputs" field')
    if "inputs" not in payload:
        raise validation_error("inputs is missing", "inputs")
    for key in payload:  # a misplaced key must not be answered as if it were absent
        if key not in _TGI_FIELDS:
            where = f"; did you mean parameters.{key}?" if key in _KNOWN_PARAMETERS else ""
            raise validation_error(
                f"{shown(key)} is not a field of a TGI request (fields: {sorted(_TGI_FIELDS)}){where}", key
            )
    inputs = payload["inputs"]
    batched = isinstance(inputs, list)
    prompts = inputs if batched else [inputs]
    if not prompts:
        raise validation_error("inputs is an empty list")
    for i, prompt in enumerate(prompts):
        where = f"inputs[{i}]" if batched else "inputs"
        if not isinstance(prompt, str):
            raise validation_error(f"{where} must be a string, got {shown(prompt)}", "inputs")
        if not prompt:
            raise validation_error(f"{where} is empty", "inputs")
    stream = payload.get("stream", False)
    if not isinstance(stream, bool):
        raise validation_error("stream must be true or false")
    if stream and batched:
        raise validation_error("stream needs a single string in inputs, not a list")
    return GenerateRequest(tuple(prompts), batched, _parse_params(payload.get("parameters")), stream)


# ---- Responses ---------------------------------------------------------------------------------


def generation_details(generation: Generation) -> dict[str, Any]:
    """TGI's `details` object."""
    return {
        "finish_reason": generation.finish_reason,
        "generated_tokens": len(generation.tokens),
        "seed": generation.seed,
        "prefill": [],
        "tokens": [token.as_json() for token in generation.tokens],
    }


def generation_json(generation: Generation, prompt: str, params: GenerationParams) -> dict[str, Any]:
    """One response entry. `details` comes when asked, and always when the time limit cut the text short."""
    text = prompt + generation.text if params.return_full_text else generation.text
    entry: dict[str, Any] = {"generated_text": text}
    if params.details or generation.finish_reason == "time_limit":
        entry["details"] = generation_details(generation)
    return entry


def stream_event(token: Token | None, final: Generation | None = None, full_text: str | None = None) -> bytes:
    """One server-sent event; the last one carries the full text (and details, as in TGI).

    `token` is None only in the last event of a generation that produced no token (time limit in queue).
    """
    event: dict[str, Any] = {
        "token": token.as_json() if token else None,
        "generated_text": full_text if final else None,
    }
    if final is not None:
        event["details"] = {
            "finish_reason": final.finish_reason,
            "generated_tokens": len(final.tokens),
            "seed": final.seed,
        }
    return b"data:" + json.dumps(event).encode() + b"\n\n"


def error_event(error: str, error_type: str) -> bytes:
    """A server-sent error event (the stream has already answered 200 when it happens)."""
    return b"data:" + json.dumps({"error": error, "error_type": error_type}).encode() + b"\n\n"
