"""The HTTP API SageMaker calls: GET /ping, POST /invocations, GET /execution-parameters (Starlette).

The app never blocks its event loop on the model: loading runs in a background thread (so /ping
answers 503 at once, then 200), tokenization in the threadpool, generation in the engine thread.
Every refusal is a JSON `{"error", "error_type"}` with a 4xx/5xx status, and the server keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from jax_llm.serving.mailbox import Mailbox
from jax_llm.serving.schema import (
    GenerateRequest,
    Generation,
    RequestError,
    Token,
    error_event,
    generation_json,
    parse_request,
    stream_event,
    validation_error,
)
from jax_llm.serving.settings import ServingSettings

if TYPE_CHECKING:  # the engine imports JAX, which the server must not wait for before it listens
    from jax_llm.serving.engine import Prompt

log = logging.getLogger(__name__)

CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
CUSTOM_ATTRIBUTES_CHARS = 1024  # InvokeEndpoint's limit on the header's value
INLINE_TOKENIZE_BYTES = 16 * 1024
JSON_TYPES = ("application/json", "")  # SageMaker passes the client's ContentType; none means JSON here
JSONL_TYPES = ("application/jsonlines", "application/x-jsonlines", "application/jsonl")


def error_response(error: RequestError, headers: dict[str, str]) -> JSONResponse:
    if error.status >= 500:
        log.warning("%s: %s", error.error_type, error.message)
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


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


def _engine_or_503(request: Request):
    engine = request.app.state.engine
    if request.app.state.load_error is not None:
        raise RequestError(500, "load_failed", request.app.state.load_error)
    if engine is None:
        raise RequestError(503, "not_ready", "the model is still loading; retry when /ping answers 200")
    return engine


async def ping(request: Request) -> Response:
    """200 once the model can serve, 503 while it loads, 500 if loading or the engine failed (says why)."""
    state = request.app.state
    if state.engine is not None and state.engine.failed:
        return JSONResponse(
            {"error": "the generation engine failed; see the log", "error_type": "engine_failed"},
            status_code=500,
        )
    if state.engine is not None:
        return JSONResponse({"status": "ready", **state.engine.load()})
    if state.load_error is not None:
        return JSONResponse({"error": state.load_error, "error_type": "load_failed"}, status_code=500)
    return JSONResponse({"error": "the model is loading", "error_type": "not_ready"}, status_code=503)


async def execution_parameters(request: Request) -> Response:
    """What a batch transform job should send: concurrency that fills the slots, strategy, payload size."""
    settings: ServingSettings = request.app.state.settings
    return JSONResponse(
        {
            "MaxConcurrentTransforms": settings.max_concurrent_transforms,
            "BatchStrategy": settings.batch_strategy,
            "MaxPayloadInMB": settings.max_payload_bytes // (1024 * 1024),
        }
    )


def _parse_body(body: bytes, media_type: str) -> list[GenerateRequest]:
    """One request for JSON; one per line for JSON Lines (batch transform's MultiRecord with SplitType Line)."""
    if media_type not in JSONL_TYPES:
        return [parse_request(body)]
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


async def invocations(request: Request) -> Response:
    """TGI-style generation: a JSON list of results, server-sent events when `stream` is true, or JSON Lines."""
    arrived = time.monotonic()
    settings: ServingSettings = request.app.state.settings
    headers: dict[str, str] = {}
    try:
        headers = echoed_headers(request)
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type not in JSON_TYPES + JSONL_TYPES:
            raise RequestError(
                415,
                "unsupported_media_type",
                f"Content-Type {media_type!r} is not supported; send application/json (or application/jsonlines)",
            )
        body = await read_body(request, settings.max_payload_bytes, settings.body_timeout_s)
        parsed = _parse_body(body, media_type)
        engine = _engine_or_503(request)

        def prepare() -> list[list[Prompt]]:
            return [engine.prepare(r) for r in parsed]

        # Tokenizing a 6 MB prompt takes a while: off the event loop. A short one costs less than the hop.
        prompts = await run_in_threadpool(prepare) if len(body) > INLINE_TOKENIZE_BYTES else prepare()
        deadline = arrived + settings.request_timeout_s
        mailbox: Mailbox = request.app.state.mailbox
        if parsed[0].stream:  # a single JSON request
            events: asyncio.Queue = asyncio.Queue()
            sink = lambda token, final: mailbox.post(events.put_nowait, (token, final))
            sequences = engine.submit(prompts[0], deadline, [sink], stream=True)
            return StreamingResponse(
                _sse(events, sequences, parsed[0]), media_type="text/event-stream", headers=headers
            )
        flat = [prompt for group in prompts for prompt in group]
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in flat]
        sequences = engine.submit(flat, deadline, [_resolver(mailbox, f) for f in futures], stream=False)
        try:
            generations: list[Generation] = await asyncio.gather(*futures)
        finally:  # the client went away or the server is being killed: free the slots
            for sequence in sequences:
                sequence.cancel()
        if any(g.finish_reason == "error" for g in generations):
            raise RequestError(500, "generation", "the generation engine failed; see the server log")
        answers, done = [], 0
        for req in parsed:
            mine = generations[done : done + len(req.inputs)]
            answers.append([generation_json(g, text, req.params) for g, text in zip(mine, req.inputs)])
            done += len(req.inputs)
        if media_type in JSONL_TYPES:
            lines = "".join(json.dumps(answer) + "\n" for answer in answers)
            return Response(lines, media_type="application/jsonlines", headers=headers)
        return JSONResponse(answers[0], headers=headers)
    except RequestError as error:
        return error_response(error, headers)


def _resolver(mailbox: Mailbox, future: asyncio.Future):
    def resolve(final: Generation) -> None:
        if not future.done():  # a cancelled request's future stays cancelled
            future.set_result(final)

    def sink(token: Token | None, final: Generation | None) -> None:
        if final is not None:
            mailbox.post(resolve, final)

    return sink


async def _sse(events: asyncio.Queue, sequences: list, parsed: GenerateRequest) -> AsyncIterator[bytes]:
    """One `data:{...}` event per token; the last carries the full text. Dropping the client frees the slot."""
    try:
        while True:
            # Tokens that piled up while the loop was busy go out in one write.
            items = [await events.get()]
            while items[-1][1] is None and not events.empty():
                items.append(events.get_nowait())
            chunk = b"".join(stream_event(token) for token, _ in items[:-1])
            token, final = items[-1]
            if final is None:
                yield chunk + stream_event(token)
            elif final.finish_reason == "error":
                yield chunk + error_event("the generation engine failed; see the server log", "generation")
                return
            else:
                full_text = parsed.inputs[0] + final.text if parsed.params.return_full_text else final.text
                yield chunk + stream_event(token, final, full_text)
                return
    finally:
        for sequence in sequences:
            sequence.cancel()


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error in %s", request.url.path, exc_info=exc)
    return JSONResponse(
        {"error": f"internal error: {type(exc).__name__}", "error_type": "internal"}, status_code=500
    )


def create_app(settings: ServingSettings, load_engine) -> Starlette:
    """The ASGI app. `load_engine(settings) -> Engine` runs in a background thread at startup."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        app.state.settings = settings
        app.state.mailbox = Mailbox(asyncio.get_running_loop())
        app.state.engine = None
        app.state.load_error = None

        def load() -> None:
            try:
                app.state.engine = load_engine(settings)
            except Exception as error:
                log.exception("loading the model from %s failed", settings.model_dir)
                app.state.load_error = f"loading the model from {settings.model_dir} failed: {error}"

        threading.Thread(target=load, name="model-loader", daemon=True).start()
        yield
        # uvicorn has stopped accepting and drained in-flight requests by now.
        if app.state.engine is not None:
            app.state.engine.stop(timeout=settings.shutdown_grace_s)

    routes = [
        Route("/ping", ping, methods=["GET"]),
        Route("/invocations", invocations, methods=["POST"]),
        Route("/execution-parameters", execution_parameters, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers={Exception: _internal_error})
