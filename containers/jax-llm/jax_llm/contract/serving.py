"""The serving side of the contract: decode slots, and the metric lines the endpoint's log stream carries.

The server writes one JSON line to stdout per finished request (``REQUEST_EVENT``), one per
``ENGINE_REPORT_S`` while it serves (``ENGINE_EVENT``) and one when it turns ready (``STARTUP_EVENT``).
SageMaker ships the container's stdout to the endpoint's log group
(``/aws/sagemaker/Endpoints/<endpoint name>``), where EndpointStack's metric filters turn each field below
into a CloudWatch metric in ``NAMESPACE``. One table, read by both sides: the server
writes exactly these fields, the stack filters exactly these. Stdlib only: the CDK stack imports it.
"""

from __future__ import annotations

import dataclasses
import json

# SageMaker sends /ping and /invocations to this port, unless PORT_VARIABLE names another (multi-container
# endpoints).
SERVING_PORT = 8080
PORT_VARIABLE = "SAGEMAKER_BIND_TO_PORT"
# A model directory with code/<this, or inference.py>: the team's own inference handler.
PROGRAM_VARIABLE = "SAGEMAKER_PROGRAM"

# Decode slots: requests generating at once (the compiled decode batch), unless the environment variable
# DECODE_SLOTS_VARIABLE says otherwise. The endpoint's concurrency autoscaling target is derived from it.
DEFAULT_DECODE_SLOTS = 32
DECODE_SLOTS_VARIABLE = "JAX_LLM_MAX_BATCH"
# GPUs one model is split over (tensor parallelism): a count, or "auto" (unset): as few as hold it.
TENSOR_PARALLEL_VARIABLE = "JAX_LLM_TENSOR_PARALLEL"
# Prompt tokens one prefill call computes at most (rows x padded length; vLLM's max_num_batched_tokens): long
# prompts are prefilled fewer at a time, so that a prefill's logits and attention scores stay bounded. 4096
# tokens already keep a GPU's matmuls busy; more rows would only add memory.
DEFAULT_PREFILL_TOKENS = 4096


def doubling(top: int) -> list[int]:
    """1, 2, 4, ... below `top`, then `top`: the batch sizes the server compiles for up to `top` rows."""
    return [1 << i for i in range(top.bit_length()) if 1 << i < top] + [top]


def prefill_rows_at(length: int, max_rows: int, max_tokens: int) -> int:
    """Prompts one prefill call takes when padded to `length`: the largest compiled batch size up to
    `max_rows` whose rows x length stays within `max_tokens`; always at least one."""
    return max([rows for rows in doubling(max_rows) if rows * length <= max_tokens], default=1)


# In a model directory: JAX compilation-cache entries of its serving programs (`python -m jax_llm
# compile-cache`), which the server copies into its local cache at start: a fresh instance need not compile.
COMPILE_CACHE_DIR = "compile_cache"

NAMESPACE = "JaxLlm/Serving"
REQUEST_EVENT = "jax_llm.request"  # a request finished: its timings and token counts
ENGINE_EVENT = "jax_llm.engine"  # the engine's load, every ENGINE_REPORT_S
ENGINE_REPORT_S = 10.0
STARTUP_EVENT = "jax_llm.startup"  # once, when the server turns ready: its cold-start budget


@dataclasses.dataclass(frozen=True)
class LogMetric:
    """One numeric field of a metric line, and the CloudWatch metric a metric filter makes of it."""

    event: str  # REQUEST_EVENT or ENGINE_EVENT
    field: str  # the JSON key in the line
    metric_name: str  # the CloudWatch metric
    unit: str  # a CloudWatch unit name
    meaning: str

    @property
    def filter_pattern(self) -> str:
        """The CloudWatch Logs filter pattern of the lines that carry this field (a field may be absent: a
        metric filter then publishes nothing, rather than a false 0)."""
        return f'{{ $.event = "{self.event}" && $.{self.field} = * }}'


REQUEST_METRICS = (
    LogMetric(REQUEST_EVENT, "queue_ms", "QueueTime", "Milliseconds", "arrival to first prefill"),
    LogMetric(REQUEST_EVENT, "ttft_ms", "TimeToFirstToken", "Milliseconds", "arrival to first token"),
    LogMetric(
        REQUEST_EVENT,
        "tpot_ms",
        "TimePerOutputToken",
        "Milliseconds",
        "mean time between output tokens after the first (absent with fewer than 2 tokens)",
    ),
    LogMetric(REQUEST_EVENT, "prompt_tokens", "PromptTokens", "Count", "tokens in the prompt"),
    LogMetric(REQUEST_EVENT, "generated_tokens", "GeneratedTokens", "Count", "tokens generated"),
)
ENGINE_METRICS = (
    LogMetric(ENGINE_EVENT, "slots_in_use", "SlotsInUse", "Count", "decode slots holding a request"),
    LogMetric(ENGINE_EVENT, "requests_waiting", "RequestsWaiting", "Count", "requests queued for a slot"),
)
# The phases of a start, in order; they add up to ready_ms (process start to the first 200 on /ping).
STARTUP_PHASES = {
    "boot": "process start to the model loader's start (interpreter, server imports, socket)",
    "import": "JAX, Flax and the model code imported",
    "model_read": "config, tokenizer and parameters read from the model directory into host memory",
    "device_transfer": "parameters cast and put on the device, the KV cache allocated",
    "compile": "every serving program traced, lowered and compiled, or read from the compilation cache",
    "warm_up": "each serving program's one warm-up run",
    "engine_start": "engine thread, chat template and metrics wired up",
}
STARTUP_METRICS = tuple(
    LogMetric(
        STARTUP_EVENT, f"{phase}_ms", "Startup" + phase.title().replace("_", ""), "Milliseconds", meaning
    )
    for phase, meaning in STARTUP_PHASES.items()
) + (LogMetric(STARTUP_EVENT, "ready_ms", "TimeToReady", "Milliseconds", "process start to /ping 200"),)
LOG_METRICS = REQUEST_METRICS + ENGINE_METRICS + STARTUP_METRICS


def metric_line(event: str, **fields: object) -> str:
    """One metric line: compact JSON with ``event`` first; fields that are None are left out."""
    return json.dumps(
        {"event": event, **{k: v for k, v in fields.items() if v is not None}}, separators=(",", ":")
    )
