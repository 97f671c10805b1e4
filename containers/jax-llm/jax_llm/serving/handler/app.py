"""The HTTP API for a model served through the team's inference handler (`code/inference.py`).

Same contract as the built-in GPT's app: the socket listens at once; the handler is imported and its
`model_fn` runs in a background thread, /ping answering 503 meanwhile, 200 once the model is loaded and
500 naming the error if loading failed (whatever it raised, `sys.exit()` included, also in the log). Each
request runs on the handler's own pool of `decode_slots` threads, so /ping stays fast while a handler
computes, under the built-in server's deadline (`request_timeout_s`): a call past it is answered 504 (its
thread runs on until the handler returns; Python cannot stop it), and a request that finds every thread
busy is answered 503 at once rather than queued behind them. Every failure is a JSON error for that
request only: the handler raising, or returning something that is not an HTTP body and content type.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import re
import threading
import time
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from jax_llm.serving.api.http import echoed_headers, read_body
from jax_llm.serving.api.tgi_api import error_response
from jax_llm.serving.api.tgi_schema import shown
from jax_llm.serving.engine.types import RequestError
from jax_llm.serving.settings import ServingSettings

log = logging.getLogger(__name__)

# RFC 9110's media type: type "/" subtype, then parameters; printable ASCII only (it becomes a header).
_MEDIA_TYPE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+/[!#$%&'*+.^_`|~0-9A-Za-z-]+(\s*;[\x20-\x7e]*)?")


class HandlerPool:
    """At most `workers` handler calls at once, each awaited until a deadline."""

    def __init__(self, workers: int):
        self.workers = workers
        self._executor = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="handler")
        self._free = threading.BoundedSemaphore(workers)  # released when a call returns, late or not

    async def call(self, deadline: float, name: str, function, *args) -> Any:
        """`function(*args)` on a pool thread; RequestError 503 when every thread is busy, 504 past
        `deadline` (time.monotonic())."""
        if not self._free.acquire(blocking=False):
            raise RequestError(
                503,
                "overloaded",
                f"all {self.workers} handler threads are busy (some may be running past the deadline); "
                "retry later",
            )
        started = time.monotonic()
        try:
            future = self._executor.submit(function, *args)
        except BaseException:
            self._free.release()
            raise
        future.add_done_callback(lambda _: self._done(name, started))
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            raise RequestError(
                504,
                "time_limit",
                f"{name} did not answer within the server's request timeout "
                f"({deadline - started:.3g} s); its thread is still busy with the request",
            ) from None

    def _done(self, name: str, started: float) -> None:
        self._free.release()
        if (elapsed := time.monotonic() - started) > 60:
            log.warning("%s returned after %.0f s", name, elapsed)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def http_answer(name: str, result: Any) -> tuple[bytes, str]:
    """The handler's (body, content type) as an HTTP body; RequestError 500 naming what is wrong."""
    body, content_type = result
    if isinstance(body, str):
        try:
            body = body.encode("utf-8")
        except UnicodeEncodeError:
            raise RequestError(500, "handler", f"{name} returned text that is not valid Unicode") from None
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise RequestError(
            500,
            "handler",
            f"{name} returned a {type(body).__name__}; output_fn/transform_fn must return bytes or str "
            "(encode the prediction, e.g. with sagemaker_inference's encoder)",
        )
    if not isinstance(content_type, str) or not _MEDIA_TYPE.fullmatch(content_type):
        raise RequestError(
            500,
            "handler",
            f"{name} returned the content type {shown(content_type)}, which is not a media type",
        )
    return bytes(body), content_type


async def ping(request: Request) -> Response:
    state = request.app.state
    if state.load_error is not None:
        return JSONResponse({"error": state.load_error, "error_type": "load_failed"}, status_code=500)
    if not state.loaded:
        return JSONResponse({"error": "the model is loading", "error_type": "not_ready"}, status_code=503)
    return JSONResponse({"status": "ready", "handler": state.handler.name})


async def invocations(request: Request) -> Response:
    state, settings = request.app.state, request.app.state.settings
    deadline = time.monotonic() + settings.request_timeout_s
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
        if accept and not _MEDIA_TYPE.fullmatch(accept):  # it becomes the answer's Content-Type
            raise RequestError(406, "not_acceptable", f"Accept {shown(accept)} is not one media type")
        name = state.handler.name
        try:
            result = await state.pool.call(
                deadline, name, state.handler, state.model, body, content_type, accept
            )
        except RequestError:
            raise
        except Exception as error:  # the handler's own failure: this request only
            # The inference toolkit's errors carry the status the handler chose (a 4xx for a bad body).
            status = getattr(error, "status_code", None)
            status = status if isinstance(status, int) and 400 <= status < 600 else 500
            if status >= 500:
                log.exception("%s failed on a request", name)
            raise RequestError(status, "handler", f"{name}: {type(error).__name__}: {error}"[:2000]) from None
        answer, answer_type = http_answer(name, result)
        return Response(answer, media_type=answer_type, headers=headers)
    except RequestError as error:
        if error.status >= 500:
            log.warning("%s: %s", error.error_type, error.message)
        return error_response(error, headers)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    kind = "not_found" if exc.status_code == 404 else "method_not_allowed"
    error = RequestError(exc.status_code, kind, f"no route {request.method} {shown(request.url.path)}")
    return error_response(error, dict(exc.headers or {}))


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error in %s", request.url.path, exc_info=exc)
    return error_response(RequestError(500, "internal", f"internal error: {type(exc).__name__}"), {})


def create_handler_app(settings: ServingSettings, program: Path) -> Starlette:
    """The ASGI app serving `program`'s handler functions on `settings.model_dir`."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        app.state.settings = settings
        app.state.loaded, app.state.load_error, app.state.handler, app.state.model = False, None, None, None
        app.state.pool = HandlerPool(settings.decode_slots)

        def load() -> None:
            from jax_llm.serving.handler.user_code import load_handler

            try:
                app.state.handler = load_handler(program)
                app.state.model = app.state.handler.model_fn(str(settings.model_dir))
                app.state.loaded = True
                log.info("%s loaded the model from %s", program.name, settings.model_dir)
            except BaseException as error:  # sys.exit() too: said on /ping and in the log
                log.exception("loading the model through %s failed", program)
                app.state.load_error = f"{program.name}: {type(error).__name__}: {error}"[:2000]

        threading.Thread(target=load, name="handler-loader", daemon=True).start()
        yield
        app.state.pool.shutdown()

    routes = [Route("/ping", ping, methods=["GET"]), Route("/invocations", invocations, methods=["POST"])]
    handlers = {HTTPException: _http_error, Exception: _internal_error}
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers=handlers)
