"""TGI's schema over HTTP: a JSON list of results, server-sent events when `stream` is true, or JSON Lines."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from jax_llm.serving.api.generation import ENGINE_FAILED, TokenStream, generate
from jax_llm.serving.api.http import (
    JSONL_TYPES,
    client_gone,
    engine_or_503,
    off_loop,
    prepare,
    token_headers,
)
from jax_llm.serving.api.tgi_schema import (
    error_event,
    generation_json,
    parse_request,
    parse_tgi,
    stream_event,
)
from jax_llm.serving.engine.types import GenerateRequest, RequestError, validation_error

API = "tgi"


def error_response(error: RequestError, headers: dict[str, str]) -> JSONResponse:
    """TGI's error shape: {"error", "error_type"}."""
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


def parse_lines(body: bytes) -> list[GenerateRequest]:
    """One request per line (batch transform's MultiRecord with SplitType Line)."""
    requests = []
    for number, line in enumerate(body.splitlines(), 1):
        if not line.strip():
            continue
        try:
            requests.append(parse_request(line))
        except RequestError as error:
            raise RequestError(error.status, error.error_type, f"line {number}: {error.message}") from None
        if requests[-1].stream:
            raise validation_error(f"line {number}: stream is not available for JSON Lines")
    if not requests:
        raise validation_error("the JSON Lines body holds no request")
    return requests


async def answer(
    request: Request, payload: Any, body: bytes, media_type: str, headers: dict[str, str], arrived: float
) -> Response:
    """Generates for a TGI body (`payload`, decoded) or a JSON Lines body; raises RequestError."""
    if media_type in JSONL_TYPES:  # one JSON document per line: decoded off the event loop when large
        parsed = await off_loop(len(body), lambda: parse_lines(body))
    else:
        parsed = [parse_tgi(payload)]
    engine = engine_or_503(request)
    state = request.app.state
    prompts = await prepare(engine, parsed, len(body))
    deadline = arrived + state.settings.request_timeout_s
    if parsed[0].stream:  # a single JSON request
        stream = TokenStream(engine, state.mailbox, prompts[0][0], deadline, arrived)
        prompt_tokens = {"x-prompt-tokens": str(len(prompts[0][0].ids))}
        return StreamingResponse(
            _sse(stream, parsed[0]), media_type="text/event-stream", headers={**headers, **prompt_tokens}
        )
    flat = [prompt for group in prompts for prompt in group]
    generations = await generate(engine, state.mailbox, flat, deadline, arrived, lambda: client_gone(request))
    headers = {**headers, **token_headers(generations)}
    answers, done = [], 0
    for req in parsed:
        mine = generations[done : done + len(req.inputs)]
        answers.append([generation_json(g, text, req.params) for g, text in zip(mine, req.inputs)])
        done += len(req.inputs)
    if media_type in JSONL_TYPES:
        lines = "".join(json.dumps(answer) + "\n" for answer in answers)
        return Response(lines, media_type="application/jsonlines", headers=headers)
    return JSONResponse(answers[0], headers=headers)


async def _sse(stream: TokenStream, parsed: GenerateRequest) -> AsyncIterator[bytes]:
    """One `data:{...}` event per token; the last carries the full text. A client leaving frees the slot."""
    async for tokens, final in stream:
        if final is None:
            yield b"".join(stream_event(token) for token in tokens)
        elif final.finish_reason == "error":
            yield b"".join(stream_event(token) for token in tokens) + error_event(ENGINE_FAILED, "generation")
        else:
            full_text = parsed.inputs[0] + final.text if parsed.params.return_full_text else final.text
            last = tokens[-1] if tokens else None
            yield b"".join(stream_event(token) for token in tokens[:-1]) + stream_event(
                last, final, full_text
            )
