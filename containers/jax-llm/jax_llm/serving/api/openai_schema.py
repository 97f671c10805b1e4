"""OpenAI's completions and chat completions schemas: parsing into a `GenerateRequest`, answers and chunks.

What the official `openai` client sends to `/v1/completions` and `/v1/chat/completions` (and what may also
be POSTed to `/invocations`: a body with `messages` is chat, one with `prompt` a completion). Every
parameter is either honoured or refused with a 422 naming it; parameters at their "off" value (a penalty
of 0, `n` of 1, `logit_bias` empty, ...) are accepted, since clients fill them in. Sampling follows OpenAI:
`temperature` defaults to 1 (sampling); 0 is greedy. Logprobs: only the sampled token's (completions'
`logprobs: 0`, chat's `logprobs: true` without `top_logprobs`), since the engine keeps no alternatives.

finish_reason: "stop" for end-of-text or a stop sequence, "length" for the token budget or the server's
time limit (the text is cut short either way).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import uuid
from collections.abc import Callable
from typing import Any

from jax_llm.serving.api.tgi_schema import shown, stop_sequences
from jax_llm.serving.engine.limits import MAX_TOP_K, SEED_BITS
from jax_llm.serving.engine.types import (
    FieldNames,
    GenerateRequest,
    Generation,
    GenerationParams,
    RequestError,
    Token,
    validation_error,
)

COMPLETION, CHAT = "completion", "chat"
# `user` only labels the request for the caller's own records; `top_k` is TGI's and vLLM's extension.
_COMMON = {
    "model",
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "stop",
    "seed",
    "stream",
    "stream_options",
    "logprobs",
    "user",
}
_KNOWN = {COMPLETION: _COMMON | {"prompt", "echo"}, CHAT: _COMMON | {"messages", "max_completion_tokens"}}
# Accepted at these values only (what a client sends when it does not use them); any other value is a 422.
_OFF_VALUES: dict[str, tuple[Any, ...]] = {
    "n": (1,),
    "best_of": (1,),
    "presence_penalty": (0,),
    "frequency_penalty": (0,),
    "logit_bias": ({},),
    "suffix": ("",),
    "top_logprobs": (0,),
    "tools": ([],),
    "tool_choice": ("none",),
    "parallel_tool_calls": (False,),
    "response_format": ({"type": "text"},),
    "functions": ([],),
    "function_call": ("none",),
}
_FINISH_REASONS = {"eos_token": "stop", "stop_sequence": "stop", "length": "length", "time_limit": "length"}
COMPLETION_NAMES = FieldNames(inputs="prompt", max_new_tokens="max_tokens", truncate=None)
CHAT_NAMES = FieldNames(inputs="messages", max_new_tokens="max_tokens", truncate=None)


@dataclasses.dataclass(frozen=True)
class OpenAIRequest:
    """A parsed completions or chat request: what to generate, and how to answer."""

    kind: str  # COMPLETION or CHAT
    generate: GenerateRequest
    model: str | None
    logprobs: bool  # answer with the sampled tokens' logprobs
    echo: bool  # completions: the prompt precedes the text
    include_usage: bool  # streaming: a last chunk with `usage`

    @property
    def stream(self) -> bool:
        return self.generate.stream


def kind_of(payload: Any) -> str | None:
    """Which OpenAI schema a decoded body is in (None: not OpenAI's): the body's shape decides."""
    if isinstance(payload, dict):
        if "messages" in payload:
            return CHAT
        if "prompt" in payload and "inputs" not in payload:
            return COMPLETION
    return None


def _number(payload: dict, key: str, low: float, high: float, *, low_open: bool = False) -> float | None:
    value = payload.get(key)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (isinstance(value, float) and not math.isfinite(value))
        or value > high
        or value < low
        or (low_open and value == low)
    ):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"
        raise validation_error(f"{key} must be a number in {interval}, got {shown(value)}", key)
    return float(value)


def _integer(payload: dict, key: str, low: int, high: int | None = None) -> int | None:
    value = payload.get(key)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        bound = f"at least {low}" if high is None else f"in [{low}, {high}]"
        raise validation_error(f"{key} must be an integer {bound}, got {shown(value)}", key)
    return value


def _refuse_unsupported(payload: dict, kind: str) -> None:
    for key, value in payload.items():
        if key in _KNOWN[kind] or value is None:
            continue
        if key in _OFF_VALUES:
            if value not in _OFF_VALUES[key]:
                raise validation_error(f"{key}={shown(value)} is not supported by this server", key)
            continue
        raise validation_error(
            f"{shown(key)} is not a parameter this server knows; known: {sorted(_KNOWN[kind])}",
            key if len(key) <= 64 else None,
        )


def _stop(payload: dict) -> tuple[str, ...]:
    stop = payload.get("stop")
    return () if stop is None else stop_sequences(stop, "stop")


def _params(payload: dict, kind: str) -> GenerationParams:
    max_tokens = _integer(payload, "max_tokens", 1)
    if kind == CHAT:
        newer = _integer(payload, "max_completion_tokens", 1)
        if newer is not None and max_tokens is not None and newer != max_tokens:
            raise validation_error(
                "max_tokens and max_completion_tokens disagree; send one", "max_completion_tokens"
            )
        max_tokens = newer if newer is not None else max_tokens
    temperature = _number(payload, "temperature", 0.0, 2.0)
    top_p = _number(payload, "top_p", 0.0, 1.0, low_open=True)
    top_k = _integer(payload, "top_k", 1, MAX_TOP_K)
    seed = _integer(payload, "seed", 0, 2**SEED_BITS - 1)
    greedy = temperature == 0.0
    return GenerationParams(
        max_new_tokens=max_tokens,
        temperature=None if greedy else temperature,
        top_k=None if greedy else top_k,
        top_p=None if greedy else top_p,
        do_sample=not greedy,
        stop=_stop(payload),
        seed=seed,
    )


def _flag(payload: dict, key: str) -> bool:
    value = payload.get(key)
    if value is not None and not isinstance(value, bool):
        raise validation_error(f"{key} must be true or false, got {shown(value)}", key)
    return bool(value)


def _common(payload: dict, kind: str) -> tuple[str | None, bool, bool]:
    """model, stream, include_usage."""
    _refuse_unsupported(payload, kind)
    model = payload.get("model")
    if model is not None and not isinstance(model, str):
        raise validation_error("model must be a string", "model")
    stream = _flag(payload, "stream")
    options = payload.get("stream_options")
    include_usage = False
    if options is not None:
        if not stream:
            raise validation_error("stream_options is only allowed with stream: true", "stream_options")
        if not isinstance(options, dict) or set(options) - {"include_usage"}:
            raise validation_error('stream_options may hold only "include_usage"', "stream_options")
        include_usage = _flag(options, "include_usage")
    return model, stream, include_usage


def parse_completion(payload: dict) -> OpenAIRequest:
    """A decoded completions body; raises RequestError 422 naming the parameter."""
    model, stream, include_usage = _common(payload, COMPLETION)
    prompt = payload.get("prompt")
    batched = isinstance(prompt, list)
    prompts = prompt if batched else [prompt]
    if not prompts:
        raise validation_error("prompt is an empty list", "prompt")
    for i, text in enumerate(prompts):
        where = f"prompt[{i}]" if batched else "prompt"
        if not isinstance(text, str):
            raise validation_error(f"{where} must be a string (token id prompts are not supported)", "prompt")
        if not text:
            raise validation_error(f"{where} is empty", "prompt")
    if stream and len(prompts) > 1:
        raise validation_error("stream needs a single prompt, not a list", "prompt")
    logprobs = _integer(payload, "logprobs", 0, 5)
    if logprobs:
        raise validation_error(
            "logprobs must be 0 (the sampled tokens' own): this server keeps no alternatives", "logprobs"
        )
    echo = _flag(payload, "echo")
    if echo and logprobs is not None:
        raise validation_error(
            "echo with logprobs needs the prompt's logprobs, which this server does not compute", "echo"
        )
    generate = GenerateRequest(
        tuple(prompts), batched, _params(payload, COMPLETION), stream, COMPLETION_NAMES, keep_stop=False
    )
    return OpenAIRequest(COMPLETION, generate, model, logprobs is not None, echo, include_usage)


def _message_text(i: int, message: Any) -> dict[str, str]:
    where = f"messages[{i}]"
    if not isinstance(message, dict) or not isinstance(message.get("role"), str):
        raise validation_error(f"{where} must be an object with a role and content", "messages")
    extra = sorted(set(message) - {"role", "content", "name"})
    if extra:
        raise validation_error(f"{where}.{extra[0]} is not supported by this server", "messages")
    content = message.get("content")
    if isinstance(content, list):  # content parts: text only
        texts = []
        for j, part in enumerate(content):
            if (
                not isinstance(part, dict)
                or part.get("type") != "text"
                or not isinstance(part.get("text"), str)
            ):
                raise validation_error(
                    f"{where}.content[{j}] must be a text part: this model reads text only", "messages"
                )
            texts.append(part["text"])
        content = "".join(texts)
    if not isinstance(content, str):
        raise validation_error(f"{where}.content must be a string or a list of text parts", "messages")
    return {"role": message["role"], "content": content}


def parse_chat(payload: dict, render: Callable[[list[dict[str, str]]], str]) -> OpenAIRequest:
    """A decoded chat body, its messages rendered into a prompt by `render` (the model's chat template)."""
    model, stream, include_usage = _common(payload, CHAT)
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        raise validation_error("messages must be a non-empty list", "messages")
    prompt = render([_message_text(i, m) for i, m in enumerate(messages)])
    if not prompt:
        raise validation_error("the chat template made an empty prompt of these messages", "messages")
    logprobs = _flag(payload, "logprobs")
    generate = GenerateRequest((prompt,), False, _params(payload, CHAT), stream, CHAT_NAMES, keep_stop=False)
    return OpenAIRequest(CHAT, generate, model, logprobs, False, include_usage)


# ---- Answers ------------------------------------------------------------------------------------


def new_id(kind: str) -> str:
    return ("chatcmpl-" if kind == CHAT else "cmpl-") + uuid.uuid4().hex


def finish_reason(generation: Generation) -> str:
    return _FINISH_REASONS.get(generation.finish_reason, "stop")


def usage(generations: list[Generation]) -> dict[str, int]:
    prompt = sum(g.stats.prompt_tokens for g in generations if g.stats)
    completion = sum(len(g.tokens) for g in generations)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _completion_logprobs(tokens: list[Token] | tuple[Token, ...], offset: int) -> dict[str, Any]:
    offsets = []
    for token in tokens:
        offsets.append(offset)
        offset += len(token.text)
    return {
        "tokens": [t.text for t in tokens],
        "token_logprobs": [t.logprob for t in tokens],
        "top_logprobs": None,
        "text_offset": offsets,
    }


def _chat_logprobs(tokens: list[Token] | tuple[Token, ...]) -> dict[str, Any]:
    return {
        "content": [
            {"token": t.text, "logprob": t.logprob, "bytes": list(t.text.encode()), "top_logprobs": []}
            for t in tokens
        ]
    }


def response(request: OpenAIRequest, generations: list[Generation], model: str) -> dict[str, Any]:
    """The whole answer: `text_completion` or `chat.completion`, one choice per prompt, with usage."""
    choices = []
    for index, (generation, prompt) in enumerate(zip(generations, request.generate.inputs)):
        if request.kind == CHAT:
            choices.append(
                {
                    "index": index,
                    "message": {"role": "assistant", "content": generation.text},
                    "logprobs": _chat_logprobs(generation.tokens) if request.logprobs else None,
                    "finish_reason": finish_reason(generation),
                }
            )
        else:
            prefix = prompt if request.echo else ""
            logprobs = _completion_logprobs(generation.tokens, len(prefix)) if request.logprobs else None
            choices.append(
                {
                    "index": index,
                    "text": prefix + generation.text,
                    "logprobs": logprobs,
                    "finish_reason": finish_reason(generation),
                }
            )
    return {
        "id": new_id(request.kind),
        "object": "chat.completion" if request.kind == CHAT else "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": usage(generations),
    }


class ChunkWriter:
    """The server-sent events of one streamed answer, in OpenAI's chunk format, ending with `data: [DONE]`."""

    def __init__(self, request: OpenAIRequest, model: str):
        self.request, self.model = request, model
        self.id, self.created = new_id(request.kind), int(time.time())
        self.object = "chat.completion.chunk" if request.kind == CHAT else "text_completion"
        self._offset = 0
        self._sent = 0  # characters of generated text sent so far

    def _event(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        chunk = {
            "id": self.id,
            "object": self.object,
            "created": self.created,
            "model": self.model,
            "choices": choices,
            **extra,
        }
        if self.request.include_usage and "usage" not in extra:
            chunk["usage"] = None
        return b"data: " + json.dumps(chunk).encode() + b"\n\n"

    def _choice(self, tokens: list[Token], reason: str | None, rest: str = "") -> dict[str, Any]:
        text = "".join(t.text for t in tokens if not t.special) + rest
        self._sent += len(text)
        if self.request.kind == CHAT:
            choice = {
                "index": 0,
                "delta": {"content": text} if text or reason is None else {},
                "logprobs": _chat_logprobs(tokens) if self.request.logprobs and tokens else None,
            }
        else:
            logprobs = _completion_logprobs(tokens, self._offset) if self.request.logprobs else None
            choice = {"index": 0, "text": text, "logprobs": logprobs}
        self._offset += sum(len(t.text) for t in tokens)
        return {**choice, "finish_reason": reason}

    def start(self) -> bytes:
        """The first event: chat's assistant role; a completion's echoed prompt, if asked; else nothing."""
        if self.request.kind == CHAT:
            return self._event(
                [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "content": ""},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                ]
            )
        if self.request.echo:
            prompt = self.request.generate.inputs[0]
            self._offset = len(prompt)
            return self._event([{"index": 0, "text": prompt, "logprobs": None, "finish_reason": None}])
        return b""

    def tokens(self, tokens: list[Token]) -> bytes:
        """One event for tokens that arrived together."""
        return self._event([self._choice(tokens, None)]) if tokens else b""

    def end(self, tokens: list[Token], generation: Generation) -> bytes:
        """The last tokens with the finish reason, the usage chunk if asked, and [DONE]."""
        sent = self._sent + sum(len(t.text) for t in tokens if not t.special)
        # Text held back while it might have begun a stop sequence comes with the last event.
        events = self._event([self._choice(tokens, finish_reason(generation), generation.text[sent:])])
        if self.request.include_usage:
            events += self._event([], usage=usage([generation]))
        return events + b"data: [DONE]\n\n"

    def error(self, error: RequestError) -> bytes:
        """An error after the stream has answered 200, then [DONE]."""
        return b"data: " + json.dumps(error_body(error)).encode() + b"\n\n" + b"data: [DONE]\n\n"


def error_body(error: RequestError) -> dict[str, Any]:
    """OpenAI's error shape: {"error": {"message", "type", "param", "code"}}."""
    kind = "invalid_request_error" if error.status < 500 else "server_error"
    return {"error": {"message": error.message, "type": kind, "param": error.param, "code": error.error_type}}


def models(model: str, created: int) -> dict[str, Any]:
    """GET /v1/models: the one model this server serves."""
    return {"object": "list", "data": [model_object(model, created)]}


def model_object(model: str, created: int) -> dict[str, Any]:
    """GET /v1/models/{id}: OpenAI's model object."""
    return {"id": model, "object": "model", "created": created, "owned_by": "jax-llm"}
