"""What every generation route does over HTTP, whatever its schema: body, headers, the engine, prompts."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request

from jax_llm.serving.engine.types import GenerateRequest, Generation, RequestError

if TYPE_CHECKING:  # the engine imports JAX, which the server must not wait for before it listens
    from jax_llm.serving.engine.engine import Engine
    from jax_llm.serving.engine.prompts import Prompt

log = logging.getLogger(__name__)
T = TypeVar("T")

CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
CUSTOM_ATTRIBUTES_CHARS = 1024  # InvokeEndpoint's limit on the header's value
INLINE_TOKENIZE_BYTES = 16 * 1024
JSON_TYPES = ("application/json", "")  # SageMaker passes the client's ContentType; none means JSON here
JSONL_TYPES = ("application/jsonlines", "application/x-jsonlines", "application/jsonl")


def media_type(request: Request, allowed: tuple[str, ...]) -> str:
    """The request's Content-Type without parameters; 415 unless it is one of `allowed`."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in allowed:
        names = " or ".join(t for t in allowed if t)
        raise RequestError(
            415, "unsupported_media_type", f"Content-Type {kind!r} is not supported; send {names}"
        )
    return kind


async def read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    """The request body; 413 if it exceeds `limit` bytes (read to the end so the client gets the answer),
    408 if it has not arrived whole within `timeout_s` (a client holding a partial body open), 499 if the
    client left before sending it all."""
    declared = request.headers.get("content-length", "")
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size <= limit:
                    chunks.append(chunk)
    except TimeoutError:
        raise RequestError(
            408,
            "request_timeout",
            f"the request body did not arrive within {timeout_s:g} s "
            f"({size} bytes of {declared or 'unknown'} received)",
        ) from None
    except ClientDisconnect:  # routine: one INFO line; 499 (nginx's "client closed request") goes to nobody
        log.info("client disconnected before sending its whole request body")
        raise RequestError(
            499, "client_disconnected", "the client left before sending its whole body"
        ) from None
    if size > limit or (declared.isdigit() and int(declared) > limit):
        raise RequestError(
            413, "payload_too_large", f"request body is {size} bytes; the limit is {limit} bytes"
        )
    return b"".join(chunks)


def echoed_headers(request: Request) -> dict[str, str]:
    """The custom attributes SageMaker passes through, to echo; 400 beyond its 1024 characters (never echoed:
    InvokeEndpoint itself refuses such a request before it reaches a container)."""
    attributes = request.headers.get(CUSTOM_ATTRIBUTES)
    if attributes is not None and len(attributes) > CUSTOM_ATTRIBUTES_CHARS:
        raise RequestError(
            400,
            "validation",
            f"{CUSTOM_ATTRIBUTES} is {len(attributes)} characters; "
            f"SageMaker's limit is {CUSTOM_ATTRIBUTES_CHARS}",
        )
    return {CUSTOM_ATTRIBUTES: attributes} if attributes is not None else {}


def engine_or_503(request: Request) -> Engine:
    """The loaded engine; 503 while the model loads, 500 if loading failed."""
    engine = request.app.state.engine
    if request.app.state.load_error is not None:
        raise RequestError(500, "load_failed", request.app.state.load_error)
    if engine is None:
        raise RequestError(503, "not_ready", "the model is still loading; retry when /ping answers 200")
    return engine


async def off_loop(body_bytes: int, work: Callable[[], T]) -> T:
    """`work()`, in the threadpool when the body is large (decoding JSON, rendering a chat of many messages,
    tokenizing: each holds the event loop as long as it runs), inline when it costs less than the hop. Pure
    Python in a thread gives the interpreter up every few ms, so /ping is answered meanwhile; the tokenizer
    is given at most what the context can hold (see `PromptBuilder`), so it never holds it for long."""
    return await run_in_threadpool(work) if body_bytes > INLINE_TOKENIZE_BYTES else work()


async def prepare(engine: Engine, requests: list[GenerateRequest], body_bytes: int) -> list[list[Prompt]]:
    """Each request's prompts, tokenized (off the event loop when the body is large)."""
    return await off_loop(body_bytes, lambda: [engine.prepare(r) for r in requests])


async def client_gone(request: Request) -> None:
    """Returns once the client has disconnected (after its body was read: ASGI's next message is then
    `http.disconnect`, sent when the connection closes)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def token_headers(generations: list[Generation]) -> dict[str, str]:
    """TGI's token and timing headers (times in ms): counts summed over the prompts, times of the slowest."""
    stats = [g.stats for g in generations if g.stats is not None]
    if not stats:
        return {}
    ms = lambda seconds: str(round(seconds * 1000))  # noqa: E731
    generated = sum(s.generated_tokens for s in stats)
    headers = {
        "x-prompt-tokens": str(sum(s.prompt_tokens for s in stats)),
        "x-generated-tokens": str(generated),
        "x-queue-time": ms(max(s.queue_s for s in stats)),
        "x-inference-time": ms(max(s.total_s - s.queue_s for s in stats)),
        "x-total-time": ms(max(s.total_s for s in stats)),
    }
    per_token = [s.tpot_s for s in stats if s.tpot_s is not None]
    if per_token:
        headers["x-time-per-token"] = ms(sum(per_token) / len(per_token))
    return headers
