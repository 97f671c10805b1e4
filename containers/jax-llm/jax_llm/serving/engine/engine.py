"""The generation engine: one thread owns the model and runs continuous batching over fixed slots.

Three parts, as in engines such as vLLM: `prompts.py` turns a parsed request into token ids and budgets
(no HTTP, no JAX), `scheduler.py` queues sequences and hands them free slots, and this module is the loop.
Between decode steps the loop takes waiting sequences into free slots (prefill: up to the runner's prefill
batch of prompts per call, each into its slot's cache row, first tokens out), then launches one decode step
for every slot at once. The device keeps each slot's latest token, so the engine launches step N+1 before it
reads back step N: the host's work on step N's tokens (detokenizing, stop sequences, handing them out) runs
while the device computes step N+1. A sequence leaves its slot at end-of-text, a stop sequence, its token
budget, its deadline (it ends with what it has, finish_reason "time_limit") or when its client goes away,
and the slot takes the next request at once; the one step already launched for it by then is dropped.
Results go back through a per-sequence callback, each with its timings (`RequestStats`), which also go to
the `observe` callback (the server's metrics).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import numpy as np
from tokenizers import Tokenizer

from jax_llm.data.tokenizer import EOS_TOKEN, eos_id
from jax_llm.serving.engine.detokenize import IncrementalText
from jax_llm.serving.engine.prompts import Prompt, PromptBuilder
from jax_llm.serving.engine.runner import DecodeStep, ModelRunner, SlotParams
from jax_llm.serving.engine.sampling import seed_key_data
from jax_llm.serving.engine.scheduler import Scheduler, Sequence, Sink
from jax_llm.serving.engine.types import GenerateRequest, Generation, RequestStats, Token

log = logging.getLogger(__name__)


class Engine:
    """Continuous batching over `runner.slots` slots, fed by a queue of at most `max_queue` sequences."""

    def __init__(
        self,
        runner: ModelRunner,
        tokenizer: Tokenizer,
        max_queue: int,
        default_max_new_tokens: int,
        clock: Callable[[], float] = time.monotonic,  # what deadlines and timings are measured against
        observe: Callable[[Generation], None]
        | None = None,  # every finished generation, on the engine thread
    ):
        self.runner = runner
        self.clock = clock
        self.tokenizer = tokenizer
        self.prompts = PromptBuilder(tokenizer, runner.config.max_seq_len, default_max_new_tokens)
        self.scheduler = Scheduler(runner.slots, max_queue)
        self.observe = observe
        self.eos_id = eos_id(tokenizer)
        self.failed = False  # the engine thread died: /ping reports it so that the instance gets replaced
        # Called once, on the engine thread, when the loop stops on a fault (the server exits on it).
        self.on_fatal: Callable[[], None] | None = None
        self._thread = threading.Thread(target=self._run, name="generation-engine", daemon=True)
        self._sampling = SlotParams(runner.slots)
        # The decode step on the device and the (slot, sequence) rows it was launched for.
        self._in_flight: tuple[DecodeStep, list[tuple[int, Sequence]]] | None = None

    @property
    def context(self) -> int:
        """Positions per sequence: prompt and generated tokens together."""
        return self.prompts.context

    # ---- Called from the HTTP side -------------------------------------------------------------

    def prepare(self, request: GenerateRequest) -> list[Prompt]:
        """Tokenizes and checks each prompt against the context; RequestError (422) names the field."""
        return self.prompts.prepare(request)

    def submit(
        self,
        prompts: list[Prompt],
        deadline: float,
        sinks: list[Sink],
        stream: bool,
        arrived: float | None = None,
    ) -> list[Sequence]:
        """Queues the prompts (all or none; see `Scheduler.submit` for the refusals). `arrived`: when the
        request arrived, on the engine's clock (default: now), which its timings are measured from."""
        arrived = self.clock() if arrived is None else arrived
        sequences = [
            Sequence(p, deadline, sink, stream, IncrementalText(self.tokenizer), arrived)
            for p, sink in zip(prompts, sinks)
        ]
        self.scheduler.submit(sequences)
        return sequences

    def load(self) -> dict[str, int]:
        """How busy the engine is: sequences in slots and waiting for one."""
        return self.scheduler.load()

    def start(self) -> None:
        """Starts the engine thread."""
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Finishes what is in flight and waiting, then stops the thread."""
        self.scheduler.stop()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # ---- The engine thread ---------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while self._step():
                pass
        except BaseException:  # the device or the process, not a request: fail every request, then exit
            log.exception("generation engine failed")
            self._fail_all()
            if self.on_fatal is not None:
                self.on_fatal()

    def _step(self) -> bool:
        """Admits waiting sequences into free slots, launches a decode step, reads back the one before.

        False when stopped.
        """
        admitted = self.scheduler.admit(busy=self._in_flight is not None)
        if admitted is None:
            return False
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
            for slot, seq in enumerate(self.scheduler.slots)
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
            if self.scheduler.slots[slot] is seq:
                token, logprob = int(tokens[slot]), float(logprobs[slot])
                self._guarded(slot, seq, self._accept, slot, seq, token, logprob, now)

    def _prefill(self, admitted: list[int]) -> None:
        """Prefills the sequences just put in these slots, as many per runner call as it takes."""
        now = self.clock()
        ready = []
        for slot in admitted:
            seq = self.scheduler.slots[slot]
            if seq.cancelled or now >= seq.deadline:  # gave up or timed out while waiting
                self._finish(slot, seq, None, "cancelled" if seq.cancelled else "time_limit")
                continue
            p = seq.prompt
            seq.prefilled_at = now
            settings = (seed_key_data(p.seed or 0), p.temperature, p.top_k, p.top_p, p.greedy)
            if self._guarded(slot, seq, self._sampling.set, slot, *settings):
                seq.launched = 1
                ready.append(slot)
        # Shortest first, so that each call pads its prompts to a bucket close to all of them.
        ready.sort(key=lambda slot: len(self.scheduler.slots[slot].prompt.ids))
        while ready:
            take = self.runner.prefill_batch([len(self.scheduler.slots[slot].prompt.ids) for slot in ready])
            group, ready = ready[:take], ready[take:]
            prompts = [self.scheduler.slots[slot].prompt.ids for slot in group]
            firsts = self.runner.prefill(group, prompts, self._sampling)
            now = self.clock()
            for slot, (token, logprob) in zip(group, firsts):
                seq = self.scheduler.slots[slot]
                self._guarded(slot, seq, self._accept, slot, seq, token, logprob, now)

    def _guarded(self, slot: int, seq: Sequence, work: Callable, *args) -> bool:
        """Runs one sequence's host-side work; if it raises, that sequence alone ends with "error" (its
        request answers 500) and the loop goes on. True when the work succeeded."""
        try:
            work(*args)
            return True
        except Exception:
            log.exception("generation failed for one request; the others go on")
            if self.scheduler.slots[slot] is seq:
                self._finish(slot, seq, None, "error")
            return False

    def _accept(self, slot: int, seq: Sequence, token_id: int, logprob: float, now: float) -> None:
        """Records a generated token and decides whether the sequence ends with it."""
        p = seq.prompt
        if seq.cancelled:
            self._finish(slot, seq, None, "cancelled")
            return
        if token_id == self.eos_id:
            # Held-back bytes of an unfinished character are dropped with the EOS, in both outputs alike;
            # text held back because it might begin a stop sequence is not (it is in the final text).
            seq.release(final=True)
            token = Token(token_id, EOS_TOKEN, logprob, True)
            reason = "eos_token"
        else:
            seq.text.push(token_id)
            piece, stopped = seq.release(final=False)
            at_length = len(seq.tokens) + 1 >= p.max_new_tokens
            if stopped and not (at_length and p.keep_stop):  # TGI checks its token budget first
                reason = "stop_sequence"
            elif at_length:
                reason = "length"
            elif now >= seq.deadline:
                reason = "time_limit"
            else:
                reason = None
            if reason in ("length", "time_limit"):  # the last held-back text, which may complete a stop
                seq.text.finish()
                rest, stopped = seq.release(final=True)
                piece += rest
                if stopped and not p.keep_stop:
                    reason = "stop_sequence"
            token = Token(token_id, piece, logprob, False)
        seq.tokens.append(token)
        if seq.first_token_at is None:
            seq.first_token_at = now
        seq.last_token_at = now
        if reason is not None:
            self._finish(slot, seq, token, reason)
            return
        if seq.stream:
            seq.sink(token, None)

    def _finish(self, slot: int | None, seq: Sequence, last: Token | None, reason: str) -> None:
        if slot is not None:
            self.scheduler.release(slot)
        generation = Generation(seq.output, tuple(seq.tokens), reason, seq.prompt.seed, self._stats(seq))
        if self.observe is not None:  # first: a client that has its answer finds it counted
            self.observe(generation)
        seq.sink(last, generation)

    def _stats(self, seq: Sequence) -> RequestStats:
        n, first, last = len(seq.tokens), seq.first_token_at, seq.last_token_at
        end = last if last is not None else self.clock()  # ended with no token: in the queue, or cancelled
        return RequestStats(
            prompt_tokens=len(seq.prompt.ids),
            generated_tokens=n,
            queue_s=(seq.prefilled_at if seq.prefilled_at is not None else end) - seq.arrived,
            ttft_s=None if first is None else first - seq.arrived,
            tpot_s=(last - first) / (n - 1) if first is not None and last is not None and n > 1 else None,
            total_s=end - seq.arrived,
        )

    def _fail_all(self) -> None:
        self.failed = True
        self._in_flight = None
        for seq in self.scheduler.drain():
            self._finish(None, seq, None, "error")
