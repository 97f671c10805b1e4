"""Hands results from the engine thread to the event loop, with at most one wake-up in flight.

`loop.call_soon_threadsafe` per token means a syscall and a loop wake-up per token: with 32 streams
that is 32 per decode step. The mailbox queues callbacks and wakes the loop once for all of them.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Any


class Mailbox:
    """Thread-safe: `post` from any thread; callbacks run on `loop` in posting order."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._items: collections.deque[tuple[Callable[[Any], Any], Any]] = collections.deque()
        self._wake_pending = False

    def post(self, callback: Callable[[Any], Any], argument: Any) -> None:
        """Runs `callback(argument)` on the loop soon."""
        self._items.append((callback, argument))  # deque appends and pops are atomic
        if not self._wake_pending:
            self._wake_pending = True
            self._loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        # Cleared before draining: an item posted after the drain's last pop schedules a new wake-up.
        self._wake_pending = False
        while self._items:
            callback, argument = self._items.popleft()
            callback(argument)
