"""OpenAI's completions and chat completions over HTTP: whole answers, or server-sent chunks ending in [DONE].

Served at `/v1/completions` and `/v1/chat/completions` (so that the official client works with
`base_url=http://host:8080/v1`), and at `/invocations` when the body is in one of these schemas.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from jax_llm.serving.api.generation import ENGINE_FAILED, TokenStream, generate
from jax_llm.serving.api.http import client_gone, engine_or_503, off_loop, prepare, token_headers
from jax_llm.serving.api.openai_schema import (
    CHAT,
    ChunkWriter,
    error_body,
    parse_chat,
    parse_completion,
    response,
)
from jax_llm.serving.engine.types import RequestError


def error_response(error: RequestError, headers: dict[str, str]) -> JSONResponse:
    """OpenAI's error shape."""
    return JSONResponse(error_body(error), status_code=error.status, headers=headers)


def check_model(request: Request, asked: str | None) -> None:
    """404 when a /v1 request names a model this server does not serve (SageMaker's /invocations has one)."""
    served = request.app.state.settings.model_name
    if asked is not None and asked != served:
        raise RequestError(
            404,
            "model_not_found",
            f"the model {asked!r} does not exist; this server serves {served!r}",
            "model",
        )


async def answer(
    request: Request,
    payload: dict,
    kind: str,
    body_bytes: int,
    headers: dict[str, str],
    arrived: float,
    strict_model: bool,
) -> Response:
    """Generates for a decoded OpenAI body of `kind`; raises RequestError."""
    state = request.app.state
    if kind == CHAT:
        engine = engine_or_503(request)  # the chat template comes with the model
        # A chat of many messages takes a while to check and render: off the event loop.
        parsed = await off_loop(body_bytes, lambda: parse_chat(payload, state.chat_template.render))
    else:
        parsed = parse_completion(payload)
        engine = engine_or_503(request)
    if strict_model:
        check_model(request, parsed.model)
    model = state.settings.model_name
    [prompts] = await prepare(engine, [parsed.generate], body_bytes)
    deadline = arrived + state.settings.request_timeout_s
    if parsed.stream:
        stream = TokenStream(engine, state.mailbox, prompts[0], deadline, arrived)
        return StreamingResponse(
            _chunks(stream, ChunkWriter(parsed, model)),
            media_type="text/event-stream",
            headers={**headers, "x-prompt-tokens": str(len(prompts[0].ids))},
        )
    generations = await generate(
        engine, state.mailbox, prompts, deadline, arrived, lambda: client_gone(request)
    )
    return JSONResponse(
        response(parsed, generations, model), headers={**headers, **token_headers(generations)}
    )


async def _chunks(stream: TokenStream, writer: ChunkWriter) -> AsyncIterator[bytes]:
    first = writer.start()
    if first:
        yield first
    async for tokens, final in stream:
        if final is None:
            yield writer.tokens(tokens)
        elif final.finish_reason == "error":
            yield writer.tokens(tokens) + writer.error(RequestError(500, "generation", ENGINE_FAILED))
        else:
            yield writer.end(tokens, final)
