"""TGI's request and response schema (what JumpStart and LMI clients send): parsing, validation, output.

Parsing never touches the model: it turns a request body into a typed `GenerateRequest` or raises a
`RequestError` whose status and message name the offending field. Limits that need the tokenizer
(prompt length against the context) are checked by the engine when it tokenizes.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from jax_llm.serving.engine.types import (
    GenerateRequest,
    Generation,
    GenerationParams,
    RequestError,
    Token,
    validation_error,
)

MAX_STOP_SEQUENCES = 8
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


def _check_type(name: str, value: Any, kind: type | tuple[type, ...], label: str) -> None:
    # bool is an int subclass in Python, but JSON true is never a number here.
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise validation_error(f"parameters.{name} must be {label}, got {json.dumps(value)}")


def _parse_params(raw: Any) -> GenerationParams:
    if raw is None:
        return GenerationParams()
    if not isinstance(raw, dict):
        raise validation_error("parameters must be a JSON object")
    values = {key: value for key, value in raw.items() if value is not None}
    for key in _UNSUPPORTED_PARAMETERS:
        if values.pop(key, False) is not False:
            raise validation_error(f"parameters.{key} is not supported by this server")
    known = {field.name for field in dataclasses.fields(GenerationParams)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise validation_error(f"parameters.{unknown[0]} is not a known parameter; known: {sorted(known)}")

    if "max_new_tokens" in values:
        _check_type("max_new_tokens", values["max_new_tokens"], int, "a positive integer")
        if values["max_new_tokens"] < 1:
            raise validation_error("parameters.max_new_tokens must be at least 1")
    if "temperature" in values:
        _check_type("temperature", values["temperature"], (int, float), "a number")
        if not (0 < values["temperature"] < math.inf):
            raise validation_error("parameters.temperature must be strictly positive")
        values["temperature"] = float(values["temperature"])
    if "top_k" in values:
        _check_type("top_k", values["top_k"], int, "a positive integer")
        if values["top_k"] < 1:
            raise validation_error("parameters.top_k must be at least 1")
    if "top_p" in values:
        _check_type("top_p", values["top_p"], (int, float), "a number")
        if not (0 < values["top_p"] <= 1):
            raise validation_error("parameters.top_p must be in (0, 1]")
        values["top_p"] = float(values["top_p"])
    if "seed" in values:
        _check_type("seed", values["seed"], int, "a non-negative integer")
        if not (0 <= values["seed"] < 2**64):
            raise validation_error("parameters.seed must be in [0, 2**64)")
    if "truncate" in values:
        _check_type("truncate", values["truncate"], int, "a positive integer")
        if values["truncate"] < 1:
            raise validation_error("parameters.truncate must be at least 1")
    for flag in ("do_sample", "return_full_text", "details"):
        if flag in values:
            _check_type(flag, values[flag], bool, "true or false")
    if "stop" in values:
        stop = values["stop"]
        stop = [stop] if isinstance(stop, str) else stop
        if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
            raise validation_error("parameters.stop must be a list of non-empty strings")
        if len(stop) > MAX_STOP_SEQUENCES:
            raise validation_error(f"parameters.stop has {len(stop)} sequences; at most {MAX_STOP_SEQUENCES}")
        values["stop"] = tuple(stop)
    return GenerationParams(**values)


def decode_body(body: bytes) -> Any:
    """The JSON value of a request body (UTF-8); raises RequestError 400 when it is not JSON."""
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RequestError(400, "malformed_request", f"request body is not valid JSON: {error}") from None
    except RecursionError:  # json's decoder recurses once per nesting level
        raise RequestError(
            400, "malformed_request", "request body is nested too deeply to be a request"
        ) from None


def parse_request(body: bytes) -> GenerateRequest:
    """Parses a TGI request body into a `GenerateRequest`; raises RequestError (400/422)."""
    return parse_tgi(decode_body(body))


def parse_tgi(payload: Any) -> GenerateRequest:
    """A decoded TGI body (`inputs`, `parameters`, `stream`) as a `GenerateRequest`; RequestError 422."""
    if not isinstance(payload, dict):
        raise validation_error('request body must be a JSON object with an "inputs" field')
    if "inputs" not in payload:
        raise validation_error("inputs is missing")
    inputs = payload["inputs"]
    batched = isinstance(inputs, list)
    prompts = inputs if batched else [inputs]
    if not prompts:
        raise validation_error("inputs is an empty list")
    for i, prompt in enumerate(prompts):
        where = f"inputs[{i}]" if batched else "inputs"
        if not isinstance(prompt, str):
            raise validation_error(f"{where} must be a string")
        if not prompt:
            raise validation_error(f"{where} is empty")
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
