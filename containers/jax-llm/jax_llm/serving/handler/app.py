"""The HTTP API for a model served through the team's inference handler (`code/inference.py`).

Same contract as the built-in GPT's app: the socket listens at once; the handler is imported and its
`model_fn` runs in a background thread, /ping answering 503 meanwhile, 200 once the model is loaded and
500 naming the error if loading failed. Each request runs in the threadpool, so /ping stays fast while a
handler computes; an exception in a handler is a 500 JSON error for that request only.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from jax_llm.serving.api.http import echoed_headers, read_body
from jax_llm.serving.api.tgi_api import error_response
from jax_llm.serving.engine.types import RequestError
from jax_llm.serving.settings import ServingSettings

log = logging.getLogger(__name__)


async def ping(request: Request) -> Response:
    state = request.app.state
    if state.load_error is not None:
        return JSONResponse({"error": state.load_error, "error_type": "load_failed"}, status_code=500)
    if not state.loaded:
        return JSONResponse({"error": "the model is loading", "error_type": "not_ready"}, status_code=503)
    return JSONResponse({"status": "ready", "handler": state.handler.name})


async def invocations(request: Request) -> Response:
    state, settings = request.app.state, request.app.state.settings
    headers: dict[str, str] = {}
    try:
        headers = echoed_headers(request)
        if state.load_error is not None:
            raise RequestError(500, "load_failed", state.load_error)
        if not state.loaded:
            raise RequestError(503, "not_ready", "the model is still loading; retry when /ping answers 200")
        body = await read_body(request, settings.max_payload_bytes, settings.body_timeout_s)
        content_type = request.headers.get("content-type", "application/json").split(";")[0].strip()
        accept = request.headers.get("accept", "")
        try:
            answer, answer_type = await run_in_threadpool(
                state.handler, state.model, body, content_type, accept
            )
        except Exception as error:  # noqa: BLE001 - the handler's own failure: this request only
            log.exception("%s failed on a request", state.handler.name)
            raise RequestError(
                500, "handler", f"{state.handler.name}: {type(error).__name__}: {error}"
            ) from None
        return Response(answer, media_type=answer_type, headers=headers)
    except RequestError as error:
        return error_response(error, headers)


def create_handler_app(settings: ServingSettings, program: Path) -> Starlette:
    """The ASGI app serving `program`'s handler functions on `settings.model_dir`."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        app.state.settings = settings
        app.state.loaded, app.state.load_error, app.state.handler, app.state.model = False, None, None, None

        def load() -> None:
            from jax_llm.serving.handler.user_code import load_handler

            try:
                app.state.handler = load_handler(program)
                app.state.model = app.state.handler.model_fn(str(settings.model_dir))
                app.state.loaded = True
                log.info("%s loaded the model from %s", program.name, settings.model_dir)
            except Exception as error:  # noqa: BLE001 - said on /ping and in the log
                log.exception("loading the model through %s failed", program)
                app.state.load_error = f"{program.name}: {type(error).__name__}: {error}"

        threading.Thread(target=load, name="handler-loader", daemon=True).start()
        yield

    routes = [Route("/ping", ping, methods=["GET"]), Route("/invocations", invocations, methods=["POST"])]
    return Starlette(routes=routes, lifespan=lifespan)
