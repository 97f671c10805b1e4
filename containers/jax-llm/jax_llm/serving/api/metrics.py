"""What the server measures, and the two ways out: Prometheus' text format at GET /metrics, and metric lines.

Per request (from the engine thread, as each generation finishes): queue time, time to first token, time
per output token, prompt and generated tokens, finish reason. Per engine: slots in use and requests waiting,
read when scraped. Per HTTP answer: the API it spoke and its status. Once, at ready: the start budget (each
phase, each program's compile and warm-up run, the time to ready; `startup.py`). The official client
library keeps the numbers (one registry per app, so two servers in one process never share them).

The same request figures go to stdout as one JSON line each (`jax_llm.contract.serving`), the engine's
load every ENGINE_REPORT_S, the start's phases once: on an endpoint, SageMaker ships stdout to CloudWatch
Logs, where the stack's metric filters make CloudWatch metrics of them with no agent in the container.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from jax_llm.contract.serving import (
    ENGINE_EVENT,
    ENGINE_REPORT_S,
    LOG_METRICS,
    REQUEST_EVENT,
    STARTUP_EVENT,
    metric_line,
)
from jax_llm.serving.engine.types import Generation
from jax_llm.serving.startup import StartupTimes

CONTENT_TYPE = CONTENT_TYPE_LATEST
_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_TOKEN_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_TOKENS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
# Each event's fields, as the contract's table lists them.
_FIELDS = {
    event: {m.field for m in LOG_METRICS if m.event == event}
    for event in (REQUEST_EVENT, ENGINE_EVENT, STARTUP_EVENT)
}


def _stdout(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class ServingMetrics:
    """The server's Prometheus registry, fed by the engine and the HTTP side; `emit` writes metric lines."""

    def __init__(self, emit: Callable[[str], None] = _stdout):
        self.registry = CollectorRegistry()
        self._emit, self._emit_lock = emit, threading.Lock()
        r = self.registry
        self.queue_time = Histogram(
            "jax_llm_request_queue_time_seconds",
            "Arrival to the start of prefill.",
            buckets=_SECONDS,
            registry=r,
        )
        self.ttft = Histogram(
            "jax_llm_time_to_first_token_seconds",
            "Arrival to the first generated token.",
            buckets=_SECONDS,
            registry=r,
        )
        self.tpot = Histogram(
            "jax_llm_time_per_output_token_seconds",
            "Mean time per output token after the first, per request.",
            buckets=_TOKEN_SECONDS,
            registry=r,
        )
        self.prompt_tokens = Histogram(
            "jax_llm_request_prompt_tokens", "Prompt tokens per request.", buckets=_TOKENS, registry=r
        )
        self.generated_tokens = Histogram(
            "jax_llm_request_generation_tokens", "Generated tokens per request.", buckets=_TOKENS, registry=r
        )
        self.finished = Counter(
            "jax_llm_requests_finished",
            "Generations finished, by finish reason.",
            ["finish_reason"],
            registry=r,
        )
        self.http = Counter(
            "jax_llm_http_requests",
            "Generation requests answered, by API and HTTP status.",
            ["api", "status"],
            registry=r,
        )
        self.slots_in_use = Gauge("jax_llm_slots_in_use", "Decode slots holding a request.", registry=r)
        self.requests_waiting = Gauge(
            "jax_llm_requests_waiting", "Requests queued for a decode slot.", registry=r
        )
        self.slots = Gauge(
            "jax_llm_slots", "Decode slots: requests the engine generates at once.", registry=r
        )
        self.tensor_parallel = Gauge(
            "jax_llm_tensor_parallel", "Devices the model is split over (tensor parallelism).", registry=r
        )
        self.startup_phase = Gauge(
            "jax_llm_startup_phase_seconds",
            "Seconds each phase of the server's start took (they add up to the time to ready).",
            ["phase"],
            registry=r,
        )
        self.startup_ready = Gauge(
            "jax_llm_startup_ready_seconds", "Process start to ready (/ping 200).", registry=r
        )
        self.startup_program = Gauge(
            "jax_llm_startup_program_seconds",
            "Each serving program's compile (or compilation-cache read) and its warm-up run, at start.",
            ["program", "batch", "length", "part", "cached"],
            registry=r,
        )

    # ---- Fed by the engine and the HTTP side ----------------------------------------------------

    def observe(self, generation: Generation) -> None:
        """One finished generation (called on the engine thread): the histograms and its metric line."""
        stats = generation.stats
        if stats is None:
            return
        self.finished.labels(generation.finish_reason).inc()
        self.queue_time.observe(stats.queue_s)
        if stats.ttft_s is not None:
            self.ttft.observe(stats.ttft_s)
        if stats.tpot_s is not None:
            self.tpot.observe(stats.tpot_s)
        self.prompt_tokens.observe(stats.prompt_tokens)
        self.generated_tokens.observe(stats.generated_tokens)
        ms = lambda seconds: None if seconds is None else round(seconds * 1000, 3)  # noqa: E731
        values = {
            "queue_ms": ms(stats.queue_s),
            "ttft_ms": ms(stats.ttft_s),
            "tpot_ms": ms(stats.tpot_s),
            "prompt_tokens": stats.prompt_tokens,
            "generated_tokens": stats.generated_tokens,
        }
        self.emit(REQUEST_EVENT, values, finish_reason=generation.finish_reason)

    def answered(self, api: str, status: int) -> None:
        """One generation request answered over HTTP (any status, refusals included)."""
        self.http.labels(api, str(status)).inc()

    def watch(self, load: Callable[[], dict[str, int]], slots: int, shards: int = 1) -> None:
        """Reads the engine's load when scraped (`load` as `Engine.load`); `shards`: tensor parallelism."""
        self.slots.set(slots)
        self.tensor_parallel.set(shards)
        self.slots_in_use.set_function(lambda: load()["active"])
        self.requests_waiting.set_function(lambda: load()["waiting"])

    def started(self, times: StartupTimes) -> None:
        """The server's start budget, once, when it turns ready: gauges and one metric line."""
        for phase, seconds in times.seconds.items():
            self.startup_phase.labels(phase).set(seconds)
        self.startup_ready.set(times.ready_s)
        for p in times.programs:
            labels = (p.program, str(p.batch), str(p.length))
            self.startup_program.labels(*labels, "compile", str(p.cached).lower()).set(p.compile_s)
            self.startup_program.labels(*labels, "run", str(p.cached).lower()).set(p.run_s)
        values = {f"{phase}_ms": round(seconds * 1000, 1) for phase, seconds in times.seconds.items()}
        self.emit(
            STARTUP_EVENT,
            {**values, "ready_ms": round(times.ready_s * 1000, 1)},
            programs=len(times.programs),
            cached_programs=sum(p.cached for p in times.programs),
        )

    # ---- Out ------------------------------------------------------------------------------------

    def emit(self, event: str, values: dict[str, float | int | None], **labels: str | int) -> None:
        """A metric line of `event`: exactly the contract's fields of that event, and some labels."""
        fields = _FIELDS.get(event, set())
        if set(values) != fields:
            raise ValueError(f"{event} lines carry {sorted(fields)}, got {sorted(values)}")
        line = metric_line(event, **values, **labels)
        with self._emit_lock:  # the engine thread and the reporter both write
            self._emit(line)

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)


class EngineReporter:
    """Writes the engine's load as a metric line every `interval_s`, on a daemon thread, until stopped."""

    def __init__(
        self, metrics: ServingMetrics, load: Callable[[], dict[str, int]], interval_s: float = ENGINE_REPORT_S
    ):
        self._metrics, self._load, self._interval_s = metrics, load, interval_s
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="engine-reporter", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stopped.wait(self._interval_s):
            load = self._load()
            self._metrics.emit(
                ENGINE_EVENT, {"slots_in_use": load["active"], "requests_waiting": load["waiting"]}
            )
