"""The HTTP API: SageMaker's (GET /ping, POST /invocations, GET /execution-parameters), OpenAI's (/v1/...)
and Prometheus' (GET /metrics), on Starlette.

The app never blocks its event loop on the model: loading runs in a background thread (so /ping
answers 503 at once, then 200), tokenization in the threadpool, generation in the engine thread.
/invocations answers in the schema of the body it gets: OpenAI's chat (`messages`) or completions
(`prompt`), else TGI's (`inputs`), as TGI, LMI and vLLM containers do on SageMaker. Every refusal is a
JSON error with a 4xx/5xx status, in the request's schema, and the server keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from jax_llm.data.tokenizer import EOS_TOKEN
from jax_llm.serving.api import openai_api, tgi_api
from jax_llm.serving.api.chat import ChatTemplate
from jax_llm.serving.api.http import JSON_TYPES, JSONL_TYPES, echoed_headers, media_type, off_loop, read_body
from jax_llm.serving.api.mailbox import Mailbox
from jax_llm.serving.api.metrics import CONTENT_TYPE, EngineReporter, ServingMetrics
from jax_llm.serving.api.openai_schema import CHAT, COMPLETION, kind_of, model_object, models
from jax_llm.serving.api.tgi_schema import check_text, decode_body, decode_json, shown
from jax_llm.serving.engine.types import RequestError
from jax_llm.serving.settings import ServingSettings
from jax_llm.serving.startup import StartupTimes

log = logging.getLogger(__name__)

ErrorResponse = Callable[[RequestError, dict[str, str]], Response]


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


async def metrics(request: Request) -> Response:
    """Prometheus' text format: request timings and token counts, the engine's load, answers by status."""
    return Response(request.app.state.metrics.exposition(), media_type=CONTENT_TYPE)


async def list_models(request: Request) -> Response:
    """GET /v1/models: the one model served."""
    state = request.app.state
    return JSONResponse(models(state.settings.model_name, state.started))


async def retrieve_model(request: Request) -> Response:
    """GET /v1/models/{id}: the served model (the openai client's `models.retrieve`), else 404."""
    state, asked = request.app.state, request.path_params["model"]
    if asked != state.settings.model_name:
        error = RequestError(
            404,
            "model_not_found",
            f"the model {shown(asked)} does not exist; this server serves {state.settings.model_name!r}",
            "model",
        )
        return openai_api.error_response(error, {})
    return JSONResponse(model_object(asked, state.started))


class Answer:
    """One generation request being answered: which API it speaks decides the error shape and the count."""

    def __init__(self, request: Request, api: str, errors: ErrorResponse):
        self.request, self.api, self.errors = request, api, errors
        self.arrived = time.monotonic()
        self.headers: dict[str, str] = {}

    def speaks(self, api: str, errors: ErrorResponse) -> None:
        self.api, self.errors = api, errors

    async def run(self, work: Callable[[Answer], Awaitable[Response]]) -> Response:
        try:
            self.headers = echoed_headers(self.request)
            response = await work(self)
        except RequestError as error:
            if error.status >= 500:
                log.warning("%s: %s", error.error_type, error.message)
            response = self.errors(error, self.headers)
        except Exception as error:  # a bug of ours: this request's 500, in its schema, counted, logged
            log.exception("unhandled error answering %s", self.request.url.path)
            internal = RequestError(500, "internal", f"internal error: {type(error).__name__}")
            response = self.errors(internal, {})
        self.request.app.state.metrics.answered(self.api, response.status_code)
        return response

    async def body(self, allowed: tuple[str, ...]) -> tuple[bytes, str]:
        kind = media_type(self.request, allowed)
        settings: ServingSettings = self.request.app.state.settings
        return await read_body(self.request, settings.max_payload_bytes, settings.body_timeout_s), kind


async def invocations(request: Request) -> Response:
    """SageMaker's route: the body's shape picks the schema (OpenAI chat, OpenAI completions, else TGI)."""

    async def work(answer: Answer) -> Response:
        body, kind = await answer.body(JSON_TYPES + JSONL_TYPES)
        payload = None if kind in JSONL_TYPES else await off_loop(len(body), lambda: decode_json(body))
        openai_kind = kind_of(payload)
        if openai_kind is not None:  # refusals from here on in OpenAI's shape
            answer.speaks(openai_kind, openai_api.error_response)
        if payload is not None:
            await off_loop(len(body), lambda: check_text(body, payload))
        if openai_kind is None:
            return await tgi_api.answer(request, payload, body, kind, answer.headers, answer.arrived)
        return await openai_api.answer(
            request, payload, openai_kind, len(body), answer.headers, answer.arrived, strict_model=False
        )

    return await Answer(request, tgi_api.API, tgi_api.error_response).run(work)


def _openai_route(kind: str):
    async def route(request: Request) -> Response:
        async def work(answer: Answer) -> Response:
            body, _ = await answer.body(JSON_TYPES)
            payload = await off_loop(len(body), lambda: decode_body(body))
            if not isinstance(payload, dict):
                raise RequestError(422, "validation", "request body must be a JSON object")
            return await openai_api.answer(
                request, payload, kind, len(body), answer.headers, answer.arrived, strict_model=True
            )

        return await Answer(request, kind, openai_api.error_response).run(work)

    return route


async def _http_error(request: Request, exc: HTTPException) -> Response:
    """Starlette's own refusals (no such route: 404, wrong method: 405) as JSON in the path's schema."""
    if exc.status_code == 404:
        message = f"no route {request.method} {shown(request.url.path)}; see /ping, /invocations, /v1/..."
    else:
        message = f"{request.method} is not allowed on {shown(request.url.path)}"
    kind = "not_found" if exc.status_code == 404 else "method_not_allowed"
    error = RequestError(exc.status_code, kind, message)
    respond = openai_api.error_response if request.url.path.startswith("/v1/") else tgi_api.error_response
    return respond(error, dict(exc.headers or {}))


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error in %s", request.url.path, exc_info=exc)
    return JSONResponse(
        {"error": f"internal error: {type(exc).__name__}", "error_type": "internal"}, status_code=500
    )


def create_app(
    settings: ServingSettings, load_engine, on_fatal: Callable[[], None] | None = None
) -> Starlette:
    """The ASGI app. `load_engine(settings, observe, times) -> Engine` runs in a background thread at startup;
    `observe` is what the engine calls with each finished generation, `times` the start budget it fills.
    `on_fatal` (from the engine thread) when a fault stops the engine loop: it should stop the server
    (default: SIGTERM to this process)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        app.state.settings = settings
        app.state.mailbox = Mailbox(asyncio.get_running_loop())
        app.state.metrics = ServingMetrics()
        app.state.started = int(time.time())
        app.state.engine = None
        app.state.chat_template = None
        app.state.load_error = None
        reporter = None

        def load() -> None:
            nonlocal reporter
            try:
                times = StartupTimes()  # the start budget; `boot` (process start to here) is taken now
                engine = load_engine(settings, app.state.metrics.observe, times)
                # A fault that stops the engine loop: /ping answers 500 and the server stops (draining what
                # is left) and exits, so that SageMaker replaces the instance.
                engine.on_fatal = on_fatal or (lambda: os.kill(os.getpid(), signal.SIGTERM))
                with times.phase("engine_start"):
                    app.state.chat_template = ChatTemplate.from_model_dir(settings.model_dir, EOS_TOKEN)
                    app.state.metrics.watch(engine.load, engine.runner.slots, engine.runner.shards)
                    reporter = EngineReporter(app.state.metrics, engine.load)
                    reporter.start()
                times.ready()
                app.state.metrics.started(times)
                log.info("%s", times.summary())
                app.state.engine = engine  # last: /ping says 200 once everything above is in place
            except BaseException as error:  # SystemExit too: said on /ping and in the log, whatever it was
                log.exception("loading the model from %s failed", settings.model_dir)
                app.state.load_error = f"loading the model from {settings.model_dir} failed: {error}"

        threading.Thread(target=load, name="model-loader", daemon=True).start()
        yield
        # uvicorn has stopped accepting and drained in-flight requests by now.
        if app.state.engine is not None:
            app.state.engine.stop(timeout=settings.shutdown_grace_s)
        if reporter is not None:
            reporter.stop()

    routes = [
        Route("/ping", ping, methods=["GET"]),
        Route("/invocations", invocations, methods=["POST"]),
        Route("/execution-parameters", execution_parameters, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/v1/completions", _openai_route(COMPLETION), methods=["POST"]),
        Route("/v1/chat/completions", _openai_route(CHAT), methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model:path}", retrieve_model, methods=["GET"]),
    ]
    handlers = {HTTPException: _http_error, Exception: _internal_error}
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers=handlers)
