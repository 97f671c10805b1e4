"""`python -m jax_llm serve`: wires settings, the app and uvicorn. Listens at once; the model loads behind /ping."""

from __future__ import annotations

import logging
import sys

import uvicorn

from jax_llm.serving.api.app import create_app
from jax_llm.serving.handler.app import create_handler_app
from jax_llm.serving.handler.user_code import user_program
from jax_llm.serving.settings import ServingSettings, SettingsError


def _load_engine(settings: ServingSettings, observe, times):
    # Imported here so that the socket is open before JAX is imported (a second or more).
    with times.phase("import"):
        from jax_llm.serving.engine.loader import load_engine

    return load_engine(settings, observe, times)


def main(argv: list[str]) -> int:
    """Serves until SIGTERM, then drains in-flight requests. Returns the exit code."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    if argv:
        print(
            f"serve takes no arguments (configuration is environment variables), got {argv}", file=sys.stderr
        )
        return 2
    try:
        settings = ServingSettings.from_env()
    except SettingsError as error:
        print(f"serve: {error}", file=sys.stderr)
        return 2
    program = user_program(settings.model_dir)  # the team's code/inference.py, else the built-in GPT
    servers: list[uvicorn.Server] = []

    def stop() -> None:  # the engine stopped on a fault: uvicorn's loop sees the flag within 0.1 s
        servers[0].should_exit = True

    app = create_handler_app(settings, program) if program else create_app(settings, _load_engine, stop)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        lifespan="on",
        # Named, not "auto": a missing one should fail here rather than fall back to the slow pure-Python pair.
        http="httptools",
        loop="uvloop",
        access_log=False,
        # Longer than the front end's idle timeout, so it never reuses a connection we just closed.
        timeout_keep_alive=75,
        timeout_graceful_shutdown=settings.shutdown_grace_s,
    )
    servers.append(uvicorn.Server(config))
    servers[0].run()
    engine = getattr(app.state, "engine", None)
    if engine is not None and engine.failed:  # stopped by a fault: exit non-zero so it is seen as one
        print("serve: the generation engine failed; exiting so the instance is replaced", file=sys.stderr)
        return 1
    return 0
