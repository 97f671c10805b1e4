"""The cold-start budget: how long each phase of the server's start took, from process start to ready.

The phases (`jax_llm.contract.serving.STARTUP_PHASES`, which says what each covers) follow each other on
the model-loader thread and add up to `ready_s` (process start to the moment /ping turns 200), so a slow
start points at its cause. `compile` and `warm_up` are also kept per program (prefill per batch x prompt
bucket, decode per batch x key-length bucket). Stdlib only at import: the clock must start before JAX is.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Iterator

from jax_llm.contract.serving import STARTUP_PHASES

PHASES = tuple(STARTUP_PHASES)
log = logging.getLogger(__name__)
_IMPORTED_AT = time.monotonic()


def process_age_s() -> float:
    """Seconds since this process started: /proc/self/stat's start time against the boot clock (Linux, also
    in a container), else since this module was imported. Resolution: one clock tick (10 ms)."""
    try:
        with open("/proc/self/stat") as stat:
            # Fields after the command name (which may hold spaces); field 22, starttime, is the 20th of them.
            start_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
        return time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return time.monotonic() - _IMPORTED_AT


@dataclasses.dataclass(frozen=True)
class ProgramTime:
    """One serving program's share of the start."""

    program: str  # "prefill" or "decode"
    batch: int  # rows of the compiled call
    length: int  # prompt bucket (prefill) or key-length bucket (decode)
    compile_s: float  # trace + lower + XLA compile, or the persistent cache's read when `cached`
    run_s: float  # the rest of its warm-up call: one execution
    cached: bool  # the executable came from JAX's persistent compilation cache


class StartupTimes:
    """Seconds per phase (PHASES), per program, and to ready; `boot` is taken when it is created."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = dict.fromkeys(PHASES, 0.0)
        self.seconds["boot"] = process_age_s()
        self.programs: list[ProgramTime] = []
        self.ready_s: float | None = None

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Adds the time spent inside to phase `name` (a phase may be entered many times)."""
        if name not in self.seconds:
            raise ValueError(f"unknown start phase {name!r}; phases are {PHASES}")
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start

    @contextlib.contextmanager
    def program(self, program: str, batch: int, length: int) -> Iterator[None]:
        """Times one program's warm-up call, split by JAX's own compile events into compile and run."""
        _compile_events.register()  # JAX is imported by the time anything compiles
        spent = _CompileSpent()
        _compile_events.sinks[threading.get_ident()] = spent
        start = time.perf_counter()
        try:
            yield
        finally:
            total = time.perf_counter() - start
            del _compile_events.sinks[threading.get_ident()]
            compile_s = min(spent.seconds, total)
            self.programs.append(
                ProgramTime(program, batch, length, compile_s, total - compile_s, spent.hits > 0)
            )
            self.seconds["compile"] += compile_s
            log.info(
                "%s batch %d x length %d: %s in %.2f s, warm-up run %.2f s",
                program,
                batch,
                length,
                "read from the compilation cache" if spent.hits else "compiled",
                compile_s,
                total - compile_s,
            )
            self.seconds["warm_up"] += total - compile_s

    def ready(self) -> None:
        """Marks the server ready (called just before /ping may say 200)."""
        self.ready_s = process_age_s()

    def summary(self) -> str:
        """One log line: each phase and the total."""
        parts = ", ".join(f"{name} {self.seconds[name]:.2f}" for name in PHASES)
        hits = sum(p.cached for p in self.programs)
        return (
            f"ready {self.ready_s:.2f} s after process start: {parts} s; "
            f"{len(self.programs)} programs, {hits} from the compilation cache"
        )


class _CompileSpent:
    def __init__(self) -> None:
        self.seconds = 0.0
        self.hits = 0


class _CompileEvents:
    """JAX's monitoring listeners, registered once per process, feeding the program timed on each thread."""

    # Tracing, lowering to MLIR, and XLA's compile (which includes the persistent cache's lookup and read).
    DURATIONS = (
        "/jax/core/compile/jaxpr_trace_duration",
        "/jax/core/compile/jaxpr_to_mlir_module_duration",
        "/jax/core/compile/backend_compile_duration",
    )
    CACHE_HIT = "/jax/compilation_cache/cache_hits"

    def __init__(self) -> None:
        self.sinks: dict[int, _CompileSpent] = {}
        self._registered = False
        self._lock = threading.Lock()

    def register(self) -> None:
        with self._lock:
            if self._registered:
                return
            import jax.monitoring  # here: importing this module must not import JAX

            jax.monitoring.register_event_duration_secs_listener(self._duration)
            jax.monitoring.register_event_listener(self._event)
            self._registered = True

    def _duration(self, event: str, duration: float, **kwargs: object) -> None:
        sink = self.sinks.get(threading.get_ident())
        if sink is not None and event in self.DURATIONS:
            sink.seconds += duration

    def _event(self, event: str, **kwargs: object) -> None:
        sink = self.sinks.get(threading.get_ident())
        if sink is not None and event == self.CACHE_HIT:
            sink.hits += 1


_compile_events = _CompileEvents()
