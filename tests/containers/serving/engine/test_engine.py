"""The engine in-process: continuous batching, stop conditions, deadlines, queue limits, cancellation."""

from __future__ import annotations

import itertools
import queue
import time

import numpy as np
import pytest

from jax_llm.serving.engine.engine import Engine
from jax_llm.serving.engine.types import GenerateRequest, GenerationParams, RequestError

PROMPTS = ["import os\n", "def main(argv):\n", "class Parser(", "return self.", "x = [", "for line in f"]


def request(*inputs: str, **params) -> GenerateRequest:
    return GenerateRequest(tuple(inputs), len(inputs) > 1, GenerationParams(**params), stream=False)


class Collector:
    """A sink per sequence that records (token, final) calls in a thread-safe queue."""

    def __init__(self):
        self.calls: queue.Queue = queue.Queue()

    def sink(self, token, final):
        self.calls.put((token, final))

    def final(self, timeout: float = 30):
        while True:
            _token, final = self.calls.get(timeout=timeout)
            if final is not None:
                return final


@pytest.fixture
def engine(runner, tiny_tokenizer):
    engine = Engine(runner, tiny_tokenizer, max_queue=8, default_max_new_tokens=16)
    engine.start()
    yield engine
    engine.stop(timeout=30)


def generate(engine: Engine, req: GenerateRequest, deadline_s: float = 30.0, stream: bool = False):
    prompts = engine.prepare(req)
    collectors = [Collector() for _ in prompts]
    engine.submit(prompts, time.monotonic() + deadline_s, [c.sink for c in collectors], stream=stream)
    return [c.final() for c in collectors]


def test_many_prompts_at_once_generate_what_each_generates_alone(engine):
    """More prompts than slots: they queue, join the decode loop as slots free, and batching changes nothing."""
    # Sampled: the tiny test model's greedy output repeats one token, which would hide a token from the wrong row.
    params = {"max_new_tokens": 10, "do_sample": True, "temperature": 2.0, "seed": 11}
    together = generate(engine, request(*PROMPTS, **params))
    alone = [generate(engine, request(p, **params))[0] for p in PROMPTS]
    assert all(len({t.id for t in g.tokens}) > 2 for g in together)  # varied enough to tell rows apart
    # Same tokens; logprobs agree to float rounding (a different batch size is a different XLA program).
    assert [[t.id for t in g.tokens] for g in together] == [[t.id for t in g.tokens] for g in alone]
    for a, b in zip(together, alone):
        np.testing.assert_allclose([t.logprob for t in a.tokens], [t.logprob for t in b.tokens], atol=1e-4)
    assert all(g.finish_reason in ("length", "eos_token") for g in together)


def test_seeded_sampling_is_the_same_in_any_slot_and_batch(engine):
    params = {"max_new_tokens": 12, "do_sample": True, "temperature": 1.3, "seed": 1234}
    alone = generate(engine, request("def f(", **params))[0]
    crowded = generate(engine, request("x", "def f(", "y = ", **params))[1]
    assert [t.id for t in alone.tokens] == [t.id for t in crowded.tokens] and alone.seed == 1234


def test_streamed_tokens_arrive_one_by_one_and_concatenate_to_the_text(engine):
    prompts = engine.prepare(request("class Parser(", max_new_tokens=12))
    collector = Collector()
    engine.submit(prompts, time.monotonic() + 30, [collector.sink], stream=True)
    calls = [collector.calls.get(timeout=30)]
    while calls[-1][1] is None:
        calls.append(collector.calls.get(timeout=30))
    final = calls[-1][1]
    assert [token for token, _ in calls] == list(final.tokens)
    assert "".join(t.text for t in final.tokens if not t.special) == final.text


def test_end_of_text_ends_generation_and_is_left_out_of_the_text(runner, tiny_tokenizer):
    """Makes the third greedy token the end-of-text id, so the model's own output hits it."""
    engine = Engine(runner, tiny_tokenizer, max_queue=8, default_max_new_tokens=16)
    engine.start()
    try:
        free = generate(engine, request("import os\n", max_new_tokens=8))[0]
        engine.eos_id = free.tokens[2].id
        cut = generate(engine, request("import os\n", max_new_tokens=8))[0]
    finally:
        engine.stop(timeout=30)
    first_eos = [t.id for t in free.tokens].index(engine.eos_id)
    assert cut.finish_reason == "eos_token"
    assert len(cut.tokens) == first_eos + 1 and cut.tokens[-1].special
    assert cut.text == "".join(t.text for t in free.tokens[:first_eos])


def test_a_sequence_that_ends_early_hands_its_slot_to_the_next_undisturbed(runner, tiny_tokenizer):
    """The step after a sequence's end-of-text is already launched when the end comes back; it is dropped,
    and the request that takes the slot next generates what it generates alone."""
    engine = Engine(runner, tiny_tokenizer, max_queue=8, default_max_new_tokens=16)
    engine.start()
    # Sampled, so that a stray token from the dropped step would change what follows it.
    params = {"max_new_tokens": 10, "do_sample": True, "temperature": 2.0, "seed": 3}
    try:
        free = generate(engine, request(PROMPTS[0], **params))[0]
        ids = [t.id for t in free.tokens]
        engine.eos_id = ids[2]  # the first prompt now ends at its third token, during decode
        together = generate(engine, request(*PROMPTS, **params))  # more prompts than slots
        alone = [generate(engine, request(p, **params))[0] for p in PROMPTS]
    finally:
        engine.stop(timeout=30)
    assert len(PROMPTS) > runner.slots and ids[2] not in ids[:2]
    assert together[0].finish_reason == "eos_token" and len(together[0].tokens) == 3
    assert [[t.id for t in g.tokens] for g in together] == [[t.id for t in g.tokens] for g in alone]
    assert [g.text for g in together] == [g.text for g in alone]


def test_a_request_past_its_deadline_ends_with_what_it_has(runner, tiny_tokenizer):
    """A clock that advances one second per reading: the sequence runs out of time after a few tokens."""
    ticks = itertools.count()
    engine = Engine(
        runner, tiny_tokenizer, max_queue=8, default_max_new_tokens=16, clock=lambda: float(next(ticks))
    )
    engine.start()
    try:
        prompts = engine.prepare(request("def main(argv):\n", max_new_tokens=40))
        collector = Collector()
        engine.submit(prompts, deadline=5.0, sinks=[collector.sink], stream=False)
        final = collector.final()
    finally:
        engine.stop(timeout=30)
    assert final.finish_reason == "time_limit"
    assert 0 < len(final.tokens) < 40
    assert final.text == "".join(t.text for t in final.tokens)


def test_a_request_that_waited_past_its_deadline_ends_empty(engine):
    [final] = generate(engine, request("x = ", max_new_tokens=4), deadline_s=-1)
    assert final.finish_reason == "time_limit" and final.tokens == () and final.text == ""


def test_full_queue_is_429_and_takes_nothing(runner, tiny_tokenizer):
    engine = Engine(
        runner, tiny_tokenizer, max_queue=2, default_max_new_tokens=4
    )  # not started: nothing drains
    prompts = engine.prepare(request("a", max_new_tokens=2))
    for _ in range(runner.slots + 2):
        engine.submit(prompts, time.monotonic() + 30, [lambda *_: None], stream=False)
    with pytest.raises(RequestError) as refused:
        engine.submit(prompts, time.monotonic() + 30, [lambda *_: None], stream=False)
    assert refused.value.status == 429
    assert engine.load() == {"active": 0, "waiting": runner.slots + 2}


def test_cancelled_sequence_frees_its_slot(engine):
    prompts = engine.prepare(request("def main(argv):\n", max_new_tokens=40))
    collector = Collector()
    [sequence] = engine.submit(prompts, time.monotonic() + 30, [collector.sink], stream=True)
    collector.calls.get(timeout=30)  # the first token: it is in a slot
    sequence.cancel()
    final = collector.final()
    assert final.finish_reason in ("cancelled", "length")  # it may have finished before the flag was read
    assert engine.load() == {"active": 0, "waiting": 0}


def test_prompt_checks_against_the_context(engine):
    context = engine.context
    with pytest.raises(RequestError, match="truncate") as refused:
        engine.prepare(request("word " * (2 * context)))
    assert refused.value.status == 422
    [kept] = engine.prepare(request("word " * (2 * context), truncate=10))
    assert len(kept.ids) == 10 and kept.max_new_tokens == 16
    with pytest.raises(RequestError, match="max_new_tokens"):
        engine.prepare(request("a", max_new_tokens=context))
    [near_the_end] = engine.prepare(request("word " * context, truncate=context - 6))
    assert near_the_end.max_new_tokens == 6  # the default (16) shrinks to what the context has left


def test_each_generation_carries_its_timings_and_counts_and_is_observed_once(runner, tiny_tokenizer):
    seen = []
    engine = Engine(runner, tiny_tokenizer, max_queue=8, default_max_new_tokens=16, observe=seen.append)
    engine.start()
    try:
        finals = generate(engine, request(*PROMPTS, max_new_tokens=5))
    finally:
        engine.stop(timeout=30)
    assert sorted(map(id, seen)) == sorted(map(id, finals))
    for text, final in zip(PROMPTS, finals):
        stats = final.stats
        assert stats.prompt_tokens == len(tiny_tokenizer.encode(text, add_special_tokens=False).ids)
        assert stats.generated_tokens == len(final.tokens)
        assert 0 <= stats.queue_s <= stats.ttft_s <= stats.total_s
        assert (stats.tpot_s is None) if len(final.tokens) < 2 else (0 < stats.tpot_s <= stats.total_s)


def test_a_request_the_engine_cannot_hold_fails_alone_and_the_loop_goes_on(engine):
    """A value past its array's range (top-k past int32, which the API refuses) used to stop the engine for
    good; now only its own request ends, with "error"."""
    [bad] = engine.prepare(request("import os\n", max_new_tokens=4, do_sample=True, seed=1))
    bad.top_k = 2**40
    good = engine.prepare(request("def main(argv):\n", max_new_tokens=4))
    sinks = [Collector(), Collector()]
    engine.submit([bad, *good], time.monotonic() + 30, [s.sink for s in sinks], stream=False)
    assert sinks[0].final().finish_reason == "error"
    assert sinks[1].final().finish_reason == "length"
    assert not engine.failed
    [again] = generate(engine, request("def main(argv):\n", max_new_tokens=4))
    assert again.finish_reason == "length"


class _BrokenDevice:
    """The runner, but its prefill raises as a failing device would."""

    def __init__(self, runner):
        self._runner = runner

    def __getattr__(self, name):
        return getattr(self._runner, name)

    def prefill(self, *args, **kwargs):
        raise RuntimeError("device lost")


def test_a_device_fault_fails_every_request_marks_the_engine_failed_and_calls_on_fatal(
    runner, tiny_tokenizer
):
    engine = Engine(_BrokenDevice(runner), tiny_tokenizer, max_queue=8, default_max_new_tokens=4)
    fatal = []
    engine.on_fatal = lambda: fatal.append(True)
    engine.start()
    [final] = generate(engine, request("import os\n"))
    assert final.finish_reason == "error"
    engine._thread.join(timeout=30)
    assert engine.failed and fatal == [True]
    with pytest.raises(RequestError) as refused:
        generate(engine, request("import os\n"))
    assert refused.value.status == 503


def test_openai_stop_holds_back_what_may_begin_a_stop_and_ends_before_it(engine):
    free = generate(engine, request("def main(argv):\n", max_new_tokens=24))[0].text
    stop = free[5:8]
    req = GenerateRequest(
        ("def main(argv):\n",),
        False,
        GenerationParams(max_new_tokens=24, stop=(stop,)),
        stream=True,
        keep_stop=False,
    )
    prompts = engine.prepare(req)
    sink = Collector()
    engine.submit(prompts, time.monotonic() + 30, [sink.sink], stream=True)
    pieces, final = [], None
    while final is None:
        token, final = sink.calls.get(timeout=30)
        if token is not None and not token.special:
            pieces.append(token.text)
    assert final.text == free[: free.index(stop)] and final.finish_reason == "stop_sequence"
    assert stop not in "".join(pieces) and final.text.startswith("".join(pieces))
