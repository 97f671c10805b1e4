"""Who runs next: a bounded queue of waiting sequences and a fixed number of decode slots.

The HTTP side submits sequences (all of a request or none: 429 when the queue is full, 422 when they could
never fit, 503 while stopping); the engine thread waits here for work and takes waiting sequences into free
slots, first come first served. The slots list is written by the engine thread only; every read from
another thread (`load`) and every change to the queue holds the lock.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
from collections.abc import Callable

from jax_llm.serving.engine.detokenize import IncrementalText
from jax_llm.serving.engine.prompts import Prompt
from jax_llm.serving.engine.types import Generation, RequestError, Token

# Called from the engine thread: (token, None) for each token of a streamed sequence, then
# (last token or None, generation) once. Non-streamed sequences get only the final call.
Sink = Callable[[Token | None, Generation | None], None]


@dataclasses.dataclass(eq=False)
class Sequence:
    """One prompt in the engine: waiting, then in a slot, then finished."""

    prompt: Prompt
    deadline: float  # the engine's clock after which it ends with what it has
    sink: Sink
    stream: bool
    text: IncrementalText
    arrived: float  # when its request arrived, on the engine's clock
    tokens: list[Token] = dataclasses.field(default_factory=list)
    launched: int = 0  # tokens generated or being generated: accepted ones plus the step in flight
    cancelled: bool = False  # set by the HTTP side when the client has gone
    prefilled_at: float | None = None  # when its prefill started
    first_token_at: float | None = None
    last_token_at: float | None = None

    output: str = ""  # the text handed out: the detokenized text, less any held back for stop sequences
    stopped: bool = False

    def release(self, final: bool) -> tuple[str, bool]:
        """Hands out the detokenized text not yet handed out; returns (it, whether a stop sequence ended it).

        TGI's rule (`keep_stop`): the generation stops when its text so far ends with a stop sequence (or
        with one and a newline: TGI's `re.search(stop + "$")`), and the text keeps it. OpenAI's: it stops
        at the first stop sequence anywhere in the text, which ends just before it; until the end (`final`)
        the last (longest stop - 1) characters are held back, since they may begin one.
        """
        full, stops, start = self.text.text, self.prompt.stop, len(self.output)
        if not stops or self.prompt.keep_stop:
            self.output = full
            return full[start:], any(full.endswith((s, s + "\n")) for s in stops)
        if self.stopped:
            return "", True
        # A stop that began in text handed out would have been found whole one push earlier: search after it.
        hits = [i for stop in stops if (i := full.find(stop, start)) >= 0]
        if hits:
            self.output, self.stopped = full[: min(hits)], True
        else:
            self.output = full if final else full[: max(start, len(full) - max(map(len, stops)) + 1)]
        return self.output[start:], self.stopped

    def cancel(self) -> None:
        """Asks the engine to drop this sequence at its next step (thread-safe: a flag write)."""
        self.cancelled = True


class Scheduler:
    """`slots` decode slots and a queue of at most `max_queue` sequences waiting for one."""

    def __init__(self, slots: int, max_queue: int):
        self.max_queue = max_queue
        self.slots: list[Sequence | None] = [None] * slots
        self._waiting: collections.deque[Sequence] = collections.deque()
        self._wake = threading.Condition()
        self.stopping = False

    # ---- Called from the HTTP side -------------------------------------------------------------

    def submit(self, sequences: list[Sequence]) -> None:
        """Queues the sequences (all or none); raises RequestError 429 when the queue is full, 422 when they
        could never fit (more than slots + queue), 503 when stopping."""
        capacity = self.max_queue + len(self.slots)
        with self._wake:
            if self.stopping:
                raise RequestError(503, "shutting_down", "the server is shutting down")
            if len(sequences) > capacity:  # would not fit even on an idle server
                raise RequestError(
                    422,
                    "too_many_inputs",
                    f"the request holds {len(sequences)} inputs; this endpoint holds at most {capacity} at "
                    f"once ({len(self.slots)} slots + {self.max_queue} queue places): send at most that "
                    "many per request",
                )
            free = self.slots.count(None)
            if len(self._waiting) + len(sequences) > self.max_queue + free:
                raise RequestError(
                    429, "overloaded", f"the queue is full ({self.max_queue} waiting requests); retry later"
                )
            self._waiting.extend(sequences)
            self._wake.notify()

    def load(self) -> dict[str, int]:
        """How busy the engine is: sequences in slots and waiting for one."""
        with self._wake:
            return {"active": len(self.slots) - self.slots.count(None), "waiting": len(self._waiting)}

    def stop(self) -> None:
        """No more submissions; the engine thread finishes what it holds, then ends."""
        with self._wake:
            self.stopping = True
            self._wake.notify()

    # ---- Called from the engine thread ---------------------------------------------------------

    def admit(self, busy: bool) -> list[int] | None:
        """Puts waiting sequences into free slots and returns those slots. Blocks while there is nothing to
        do (`busy`: the engine has a step in flight); None once stopping with nothing left."""
        with self._wake:
            while not self._waiting and not any(self.slots) and not busy:
                if self.stopping:
                    return None
                self._wake.wait()
            admitted = []
            for slot, occupant in enumerate(self.slots):
                if occupant is None and self._waiting:
                    self.slots[slot] = self._waiting.popleft()
                    admitted.append(slot)
            return admitted

    def release(self, slot: int) -> None:
        """Frees a slot whose sequence has finished."""
        self.slots[slot] = None

    def drain(self) -> list[Sequence]:
        """Stops and empties the queue and the slots; returns every sequence they held."""
        with self._wake:
            self.stopping = True
            pending = [s for s in self.slots if s] + list(self._waiting)
            self._waiting.clear()
            self.slots[:] = [None] * len(self.slots)
        return pending
