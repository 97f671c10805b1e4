"""The generation engine: one thread owns the model and runs continuous batching over fixed slots.

Requests wait in a bounded queue. Between decode steps the engine moves waiting requests into free
slots (prefill: up to the runner's prefill batch of prompts per call, each into its slot's cache row,
first tokens out), then launches one decode step for every slot at once. The device keeps each slot's
latest token, so the engine launches step N+1 before it reads back step N: the host's work on step
N's tokens (detokenizing, stop sequences, handing them out) runs while the device computes step N+1.
A sequence leaves its slot at end-of-text, a stop sequence, its token budget, its deadline (it ends
with what it has, finish_reason "time_limit") or when its client goes away, and the slot takes the
next request at once; the one step already launched for it by then is dropped. Results go back
through a per-sequence callback.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import random
import threading
import time
from collections.abc import Callable

import numpy as np
from tokenizers import Tokenizer

from jax_llm.serving.detokenize import IncrementalText
from jax_llm.serving.runner import DecodeStep, ModelRunner, SlotParams
from jax_llm.serving.sampling import seed_key_data
from jax_llm.serving.schema import GenerateRequest, Generation, RequestError, Token, validation_error
from jax_llm.data.tokenizer import EOS_TOKEN, eos_id

log = logging.getLogger(__name__)

# Called from the engine thread: (token, None) for each token of a streamed sequence, then
# (last token or None, generation) once. Non-streamed sequences get only the final call.
Sink = Callable[[Token | None, Generation | None], None]


@dataclasses.dataclass
class Prompt:
    """A tokenized, validated prompt with its resolved generation settings."""

    ids: list[int]
    max_new_tokens: int
    stop: tuple[str, ...]
    greedy: bool
    temperature: float
    top_k: int  # 0 = off
    top_p: float  # 1.0 = off
    seed: int | None  # None for greedy decoding


@dataclasses.dataclass(eq=False)
class Sequence:
    """One prompt in the engine: waiting, then in a slot, then finished."""

    prompt: Prompt
    deadline: float  # time.monotonic() after which it ends with what it has
    sink: Sink
    stream: bool
    text: IncrementalText
    tokens: list[Token] = dataclasses.field(default_factory=list)
    launched: int = 0  # tokens generated or being generated: accepted ones plus the step in flight
    cancelled: bool = False  # set by the HTTP side when the client has gone

    def cancel(self) -> None:
        """Asks the engine to drop this sequence at its next step (thread-safe: a flag write)."""
        self.cancelled = True


class Engine:
    """Continuous batching over `runner.slots` slots, fed by a queue of at most `max_queue` waiting sequences."""

    def __init__(
        self,
        runner: ModelRunner,
        tokenizer: Tokenizer,
        max_queue: int,
        default_max_new_tokens: int,
        clock: Callable[[], float] = time.monotonic,  # what deadlines are measured against
    ):
        self.runner = runner
        self.clock = clock
        self.tokenizer = tokenizer
        self.context = runner.config.max_seq_len
        self.max_queue = max_queue
        self.default_max_new_tokens = default_max_new_tokens
        self.eos_id = eos_id(tokenizer)
        self._waiting: collections.deque[Sequence] = collections.deque()
        self._slots: list[Sequence | None] = [None] * runner.slots
        self._wake = threading.Condition()
        self._stopping = False
        self.failed = False  # the engine thread died: /ping reports it so that the instance gets replaced
        self._thread = threading.Thread(target=self._run, name="generation-engine", daemon=True)
        self._sampling = SlotParams(runner.slots)
        # The decode step on the device and the (slot, sequence) rows it was launched for.
        self._in_flight: tuple[DecodeStep, list[tuple[int, Sequence]]] | None = None

    # ---- Called from the HTTP side -------------------------------------------------------------

    def prepare(self, request: GenerateRequest) -> list[Prompt]:
        """Tokenizes and checks each prompt against the context; raises RequestError (422) naming the field."""
        params = request.params
        prompts = []
        for i, text in enumerate(request.inputs):
            where = f"inputs[{i}]" if request.batched else "inputs"
            ids = self.tokenizer.encode(text, add_special_tokens=False).ids
            if params.truncate is not None:
                ids = ids[-params.truncate :]
            if len(ids) >= self.context:
                hint = (
                    ""
                    if params.truncate is not None
                    else "; set parameters.truncate to keep only the last tokens"
                )
                raise validation_error(
                    f"{where} has {len(ids)} tokens but the model's context is {self.context} tokens "
                    f"(at most {self.context - 1} for the prompt){hint}"
                )
            if params.max_new_tokens is None:
                max_new = min(self.default_max_new_tokens, self.context - len(ids))
            elif len(ids) + params.max_new_tokens > self.context:
                raise validation_error(
                    f"{where} has {len(ids)} tokens; with parameters.max_new_tokens={params.max_new_tokens} that "
                    f"exceeds the model's context of {self.context} tokens"
                )
            else:
                max_new = params.max_new_tokens
            sampling = params.sampling
            seed = (params.seed if params.seed is not None else random.getrandbits(64)) if sampling else None
            prompts.append(
                Prompt(
                    ids=ids,
                    max_new_tokens=max_new,
                    stop=params.stop,
                    greedy=not sampling,
                    temperature=params.temperature or 1.0,
                    top_k=params.top_k or 0,
                    top_p=params.top_p or 1.0,
                    seed=seed,
                )
            )
        return prompts

    def submit(
        self, prompts: list[Prompt], deadline: float, sinks: list[Sink], stream: bool
    ) -> list[Sequence]:
        """Queues the prompts (all or none); raises RequestError 429 when the queue is full, 422 when they
        could never fit (more than slots + queue), 503 when stopping."""
        sequences = [
            Sequence(p, deadline, sink, stream, IncrementalText(self.tokenizer))
            for p, sink in zip(prompts, sinks)
        ]
        with self._wake:
            if self._stopping:
                raise RequestError(503, "shutting_down", "the server is shutting down")
            if len(sequences) > self.max_queue + len(self._slots):  # would not fit even on an idle server
                raise RequestError(
                    422,
                    "too_many_inputs",
                    f"the request holds {len(sequences)} inputs; this endpoint holds at "
                    f"most {self.max_queue + len(self._slots)} at once ({len(self._slots)} slots "
                    f"+ {self.max_queue} queue places): send at most that many per request",
                )
            free = self._slots.count(None)
            if len(self._waiting) + len(sequences) > self.max_queue + free:
                raise RequestError(
                    429, "overloaded", f"the queue is full ({self.max_queue} waiting requests); retry later"
                )
            self._waiting.extend(sequences)
            self._wake.notify()
        return sequences

    def load(self) -> dict[str, int]:
        """How busy the engine is: sequences in slots and waiting for one."""
        with self._wake:
            return {"active": self.runner.slots - self._slots.count(None), "waiting": len(self._waiting)}

    def start(self) -> None:
        """Starts the engine thread."""
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Finishes what is in flight and waiting, then stops the thread."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # ---- The engine thread ---------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while self._step():
                pass
        except Exception:  # a bug, not bad input: fail every request loudly rather than hang them
            log.exception("generation engine failed")
            self._fail_all()

    def _step(self) -> bool:
        """Admits waiting sequences into free slots, launches a decode step, reads back the one before.

        False when stopped.
        """
        with self._wake:
            while not self._waiting and not any(self._slots) and self._in_flight is None:
                if self._stopping:
                    return False
                self._wake.wait()
            admitted = []
            for slot, occupant in enumerate(self._slots):
                if occupant is None and self._waiting:
                    self._slots[slot] = self._waiting.popleft()
                    admitted.append(slot)
        if admitted:
            self._prefill(admitted)
        previous, self._in_flight = self._in_flight, self._launch()
        if previous is not None:
            self._collect(*previous)
        return True

    def _launch(self) -> tuple[DecodeStep, list[tuple[int, Sequence]]] | None:
        """Launches a decode step for every sequence that needs another token; None if none does."""
        rows = [
            (slot, seq)
            for slot, seq in enumerate(self._slots)
            if seq is not None and seq.launched < seq.prompt.max_new_tokens
        ]
        if not rows:
            return None
        positions = np.full(self.runner.slots, self.runner.idle_position, np.int32)  # idle: writes dropped
        step = np.zeros(self.runner.slots, np.int32)
        for slot, seq in rows:
            # Feed the latest token at the position after the last one written; generate token `launched`.
            positions[slot] = len(seq.prompt.ids) + seq.launched - 1
            step[slot] = seq.launched
            seq.launched += 1
        # Slots fill lowest first, so rows[-1] + 1 is usually the number in flight.
        return self.runner.decode(positions, step, self._sampling, rows[-1][0] + 1), rows

    def _collect(self, step: DecodeStep, rows: list[tuple[int, Sequence]]) -> None:
        """Waits for a launched step and accepts its tokens, but for sequences that ended since."""
        tokens, logprobs = step.result()
        now = self.clock()
        for slot, seq in rows:
            if self._slots[slot] is seq:
                self._accept(slot, seq, int(tokens[slot]), float(logprobs[slot]), now)

    def _prefill(self, admitted: list[int]) -> None:
        """Prefills the sequences just put in these slots, as many per runner call as it takes."""
        now = self.clock()
        ready = []
        for slot in admitted:
            seq = self._slots[slot]
            if seq.cancelled or now >= seq.deadline:  # gave up or timed out while waiting
                self._finish(slot, seq, None, "cancelled" if seq.cancelled else "time_limit")
                continue
            p = seq.prompt
            self._sampling.set(slot, seed_key_data(p.seed or 0), p.temperature, p.top_k, p.top_p, p.greedy)
            seq.launched = 1
            ready.append(slot)
        # Shortest first, so that each call pads its prompts to a bucket close to all of them.
        ready.sort(key=lambda slot: len(self._slots[slot].prompt.ids))
        while ready:
            take = self.runner.prefill_batch(len(ready))
            group, ready = ready[:take], ready[take:]
            prompts = [self._slots[slot].prompt.ids for slot in group]
            firsts = self.runner.prefill(group, prompts, self._sampling)
            now = self.clock()
            for slot, (token, logprob) in zip(group, firsts):
                self._accept(slot, self._slots[slot], token, logprob, now)

    def _accept(self, slot: int, seq: Sequence, token_id: int, logprob: float, now: float) -> None:
        """Records a generated token and decides whether the sequence ends with it."""
        p = seq.prompt
        if seq.cancelled:
            self._finish(slot, seq, None, "cancelled")
            return
        if token_id == self.eos_id:
            # Held-back bytes of an unfinished character are dropped with the EOS, in both outputs alike.
            token = Token(token_id, EOS_TOKEN, logprob, True)
            reason = "eos_token"
        else:
            piece = seq.text.push(token_id)
            reason = None
            if any(stop in seq.text.text[-(len(stop) + len(piece)) :] for stop in p.stop):
                reason = "stop_sequence"
            elif len(seq.tokens) + 1 >= p.max_new_tokens:
                reason = "length"
            elif now >= seq.deadline:
                reason = "time_limit"
            if reason is not None:
                piece += seq.text.finish()
            token = Token(token_id, piece, logprob, False)
        seq.tokens.append(token)
        if reason is not None:
            self._finish(slot, seq, token, reason)
            return
        if seq.stream:
            seq.sink(token, None)

    def _finish(self, slot: int, seq: Sequence, last: Token | None, reason: str) -> None:
        self._slots[slot] = None
        generation = Generation(seq.text.text, tuple(seq.tokens), reason, seq.prompt.seed)
        seq.sink(last, generation)

    def _fail_all(self) -> None:
        with self._wake:
            self.failed = self._stopping = True
            pending = [s for s in self._slots if s] + list(self._waiting)
            self._waiting.clear()
            self._slots = [None] * len(self._slots)
            self._in_flight = None
        for seq in pending:
            seq.sink(None, Generation(seq.text.text, tuple(seq.tokens), "error", seq.prompt.seed))
