"""The HTTP side's way into the engine, for every schema: await whole generations, or iterate a stream.

The engine calls back on its own thread; results cross to the event loop through the mailbox. A client
that goes away (the awaiting task is cancelled, or the stream is closed) cancels its sequences, which frees
their slots at the engine's next step.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

from jax_llm.serving.api.mailbox import Mailbox
from jax_llm.serving.engine.types import Generation, RequestError, Token

if TYPE_CHECKING:  # the engine imports JAX, which the server must not wait for before it listens
    from jax_llm.serving.engine.engine import Engine
    from jax_llm.serving.engine.prompts import Prompt

ENGINE_FAILED = "generating this request failed on the server; see the server log"


async def generate(
    engine: Engine,
    mailbox: Mailbox,
    prompts: list[Prompt],
    deadline: float,
    arrived: float,
    client_gone: Callable[[], Awaitable[None]] | None = None,
) -> list[Generation]:
    """Every prompt's finished generation, in order; RequestError 500 if the engine failed on any, 499 if
    `client_gone()` (which returns when the client has disconnected) returns first: its slots are freed."""
    loop = asyncio.get_running_loop()
    futures = [loop.create_future() for _ in prompts]
    sequences = engine.submit(
        prompts, deadline, [_resolver(mailbox, f) for f in futures], stream=False, arrived=arrived
    )
    everything = asyncio.gather(*futures)
    gone = asyncio.ensure_future(client_gone()) if client_gone is not None else None
    try:
        if gone is not None:
            await asyncio.wait({everything, gone}, return_when=asyncio.FIRST_COMPLETED)
            if not everything.done():
                raise RequestError(499, "client_disconnected", "the client left before its answer was ready")
        generations: list[Generation] = await everything
    finally:  # the client went away or the server is being killed: free the slots
        for sequence in sequences:
            sequence.cancel()
        if not everything.done():
            everything.cancel()
            everything.add_done_callback(_retrieved)  # else asyncio logs the cancellation as an error
        if gone is not None:
            gone.cancel()
    if any(g.finish_reason == "error" for g in generations):
        raise RequestError(500, "generation", ENGINE_FAILED)
    return generations


def _retrieved(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()


def _resolver(mailbox: Mailbox, future: asyncio.Future):
    def resolve(final: Generation) -> None:
        if not future.done():  # a cancelled request's future stays cancelled
            future.set_result(final)

    def sink(token: Token | None, final: Generation | None) -> None:
        if final is not None:
            mailbox.post(resolve, final)

    return sink


class TokenStream:
    """One prompt's tokens as they come: `async for tokens, final in stream` yields the tokens that piled up
    since the last step (one write for them) and, once, the finished generation (`final` not None)."""

    def __init__(self, engine: Engine, mailbox: Mailbox, prompt: Prompt, deadline: float, arrived: float):
        self._events: asyncio.Queue = asyncio.Queue()
        sink = lambda token, final: mailbox.post(self._events.put_nowait, (token, final))  # noqa: E731
        self._sequences = engine.submit([prompt], deadline, [sink], stream=True, arrived=arrived)

    async def __aiter__(self) -> AsyncIterator[tuple[list[Token], Generation | None]]:
        try:
            while True:
                items = [await self._events.get()]
                while items[-1][1] is None and not self._events.empty():
                    items.append(self._events.get_nowait())
                tokens = [token for token, _ in items if token is not None]
                final = items[-1][1]
                yield tokens, final
                if final is not None:
                    return
        finally:  # the client went away: free the slot
            self.close()

    def close(self) -> None:
        for sequence in self._sequences:
            sequence.cancel()
