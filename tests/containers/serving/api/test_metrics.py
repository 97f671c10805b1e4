"""The server's measurements: Prometheus' registry and the metric lines the stack's filters read."""

from __future__ import annotations

import json

import pytest
from prometheus_client.parser import text_string_to_metric_families

from jax_llm.contract.serving import ENGINE_EVENT, LOG_METRICS, REQUEST_EVENT
from jax_llm.serving.api.metrics import EngineReporter, ServingMetrics
from jax_llm.serving.engine.types import Generation, RequestStats, Token


def samples(metrics: ServingMetrics) -> dict[tuple[str, tuple], float]:
    text = metrics.exposition().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def finished(n_tokens: int, reason: str = "length") -> Generation:
    tokens = tuple(Token(i, "x", -1.0, False) for i in range(n_tokens))
    stats = RequestStats(
        prompt_tokens=5,
        generated_tokens=n_tokens,
        queue_s=0.002,
        ttft_s=0.05 if n_tokens else None,
        tpot_s=0.01 if n_tokens > 1 else None,
        total_s=0.2,
    )
    return Generation("x" * n_tokens, tokens, reason, None, stats)


def test_each_generation_is_counted_and_written_as_one_line_with_the_contract_s_fields():
    lines: list[str] = []
    metrics = ServingMetrics(emit=lines.append)
    for generation in (finished(3), finished(1, "eos_token"), finished(0, "time_limit")):
        metrics.observe(generation)
    values = samples(metrics)
    assert values[("jax_llm_requests_finished_total", (("finish_reason", "length"),))] == 1
    assert values[("jax_llm_requests_finished_total", (("finish_reason", "time_limit"),))] == 1
    assert values[("jax_llm_request_generation_tokens_sum", ())] == 4
    assert values[("jax_llm_time_to_first_token_seconds_count", ())] == 2  # the empty one has no first token
    assert values[("jax_llm_time_per_output_token_seconds_count", ())] == 1
    records = [json.loads(line) for line in lines]
    fields = {m.field for m in LOG_METRICS if m.event == REQUEST_EVENT}
    assert [r["event"] for r in records] == [REQUEST_EVENT] * 3
    assert set(records[0]) == fields | {"event", "finish_reason"}
    assert records[0]["ttft_ms"] == 50.0 and records[0]["generated_tokens"] == 3
    assert "ttft_ms" not in records[2] and "tpot_ms" not in records[1]  # absent, not zero: no false minimum


def test_a_line_with_fields_the_contract_does_not_name_is_refused():
    with pytest.raises(ValueError, match="ttft_ms"):
        ServingMetrics(emit=print).emit(REQUEST_EVENT, {"ttft": 1.0})


def test_the_engine_s_load_is_read_when_scraped_and_reported_as_lines():
    lines: list[str] = []
    metrics = ServingMetrics(emit=lines.append)
    load = {"active": 3, "waiting": 7}
    metrics.watch(lambda: load, slots=4)
    values = samples(metrics)
    assert (
        values[("jax_llm_slots_in_use", ())],
        values[("jax_llm_requests_waiting", ())],
        values[("jax_llm_slots", ())],
    ) == (3, 7, 4)
    reporter = EngineReporter(metrics, lambda: load, interval_s=0.01)
    reporter.start()
    try:
        while len(lines) < 2:
            pass
    finally:
        reporter.stop()
    assert json.loads(lines[0]) == {"event": ENGINE_EVENT, "slots_in_use": 3, "requests_waiting": 7}
