"""Every setting of the server, read once from the environment (SageMaker's variables and ours)."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from jax_llm.contract.paths import SageMakerPaths
from jax_llm.contract.serving import (
    DECODE_SLOTS_VARIABLE,
    DEFAULT_DECODE_SLOTS,
    DEFAULT_PREFILL_TOKENS,
    PORT_VARIABLE,
    SERVING_PORT,
    TENSOR_PARALLEL_VARIABLE,
)
from jax_llm.contract.transform import (
    BATCH_STRATEGY_VARIABLE,
    BATCH_VARIABLE,
    MAX_CONCURRENT_VARIABLE,
    MAX_PAYLOAD_VARIABLE,
)

ONLINE_PAYLOAD_MB = 6  # InvokeEndpoint's fixed request limit
ONLINE_TIMEOUT_S = 55.0  # InvokeEndpoint's client gives up at 60 s; answer before, with what we have
BATCH_TIMEOUT_S = 590.0  # batch transform's default InvocationsTimeoutInSeconds is 600 s
# SageMaker spells the strategy SingleRecord in the API and SINGLE_RECORD in the toolkits.
_STRATEGIES = {"SINGLERECORD": "SINGLE_RECORD", "MULTIRECORD": "MULTI_RECORD"}


class SettingsError(ValueError):
    """An environment variable with a value the server cannot use; the message names it."""


def _int(env: Mapping[str, str], key: str, default: int, minimum: int) -> int:
    raw = env.get(key, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{key}={raw!r} is not an integer") from None
    if value < minimum:
        raise SettingsError(f"{key}={value} must be at least {minimum}")
    return value


def _auto_int(env: Mapping[str, str], key: str) -> int | None:
    """A positive integer, or None for "auto" (and unset)."""
    return None if env.get(key, "").lower() in ("", "auto") else _int(env, key, 1, 1)


def _float(env: Mapping[str, str], key: str, default: float) -> float:
    raw = env.get(key, "")
    if raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{key}={raw!r} is not a number") from None
    if value <= 0:
        raise SettingsError(f"{key}={value} must be positive")
    return value


@dataclasses.dataclass(frozen=True)
class ServingSettings:
    """What the server listens on, how much it batches and queues, and how long a request may run."""

    model_dir: Path  # /opt/ml/model (SAGEMAKER_BASE_DIR/model)
    host: str = "0.0.0.0"
    port: int = SERVING_PORT  # PORT_VARIABLE (multi-container endpoints) overrides
    # Decode slots: requests generating at once (the compiled decode batch).
    decode_slots: int = DEFAULT_DECODE_SLOTS
    max_queue: int = 256  # requests waiting for a slot before /invocations answers 429
    # Waiting prompts prefilled in one call (compiled as 1, 2, 4, ... up to it). None: 8 on GPU, where a short
    # prefill is far from compute-bound; 1 on CPU, where batching them was measured to cost TTFT and start-up.
    max_prefill_batch: int | None = None
    min_prompt_bucket: int = 16  # prompts are padded to 16, 32, 64, ... up to the context length
    # Prompt tokens (rows x padded length) one prefill call computes at most: long prompts go fewer at a time.
    max_prefill_tokens: int = DEFAULT_PREFILL_TOKENS
    max_context: int | None = None  # at most this many positions (prompt + generated); None: the model's
    default_max_new_tokens: int = 64  # when a request gives no max_new_tokens
    request_timeout_s: float = ONLINE_TIMEOUT_S  # generation stops here and returns what it has
    max_payload_bytes: int = ONLINE_PAYLOAD_MB * 1024 * 1024
    compute_dtype: str | None = None  # overrides the exported config ("bfloat16" on GPU)
    compile_cache_dir: Path = Path(tempfile.gettempdir()) / "jax_llm_compile_cache"
    shutdown_grace_s: float = 25.0  # SIGTERM -> SIGKILL is 30 s on an endpoint: drain within it
    body_timeout_s: float = 30.0  # a request body not received whole by then is answered 408, not waited on
    batch_transform: bool = False  # SAGEMAKER_BATCH=true inside a batch transform job
    # What /execution-parameters advertises: one JSON request per record (a record may hold a list of
    # inputs); concurrent records fill the decode slots. MULTI_RECORD works with SplitType Line and
    # Content-Type application/jsonlines (one request per line, one answer per line).
    batch_strategy: str = "SINGLE_RECORD"
    max_concurrent_transforms: int = 32
    model_name: str = "jax-llm"  # the model's id in OpenAI's API (/v1/models, `model` of every answer)
    # Devices one model is split over (heads and MLP; engine/tensor_parallel.py). None ("auto"): as few as hold
    # the weights and every decode slot's KV cache (contract/memory_plan.py's plan_serving).
    tensor_parallel: int | None = None
    # Bytes of each device the memory plan may use; None: XLA's limit on a GPU, no plan on the CPU.
    device_memory_bytes: int | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServingSettings:
        """Reads SageMaker's variables (SAGEMAKER_*) and the server's own (JAX_LLM_*)."""
        env = os.environ if environ is None else environ
        batch = env.get(BATCH_VARIABLE, "").lower() == "true"
        decode_slots = _int(env, DECODE_SLOTS_VARIABLE, cls.decode_slots, 1)
        payload_mb = _int(env, MAX_PAYLOAD_VARIABLE, ONLINE_PAYLOAD_MB if not batch else 100, 1)
        raw_strategy = env.get(BATCH_STRATEGY_VARIABLE, "") or cls.batch_strategy
        strategy = _STRATEGIES.get(raw_strategy.upper().replace("_", ""))
        if strategy is None:
            raise SettingsError(
                f"{BATCH_STRATEGY_VARIABLE}={raw_strategy!r} must be SINGLE_RECORD or MULTI_RECORD"
            )
        return cls(
            model_dir=SageMakerPaths.from_env(env).model,
            port=_int(env, PORT_VARIABLE, cls.port, 1),
            decode_slots=decode_slots,
            max_queue=_int(env, "JAX_LLM_MAX_QUEUE", cls.max_queue, 0),
            max_prefill_batch=_int(env, "JAX_LLM_MAX_PREFILL_BATCH", 0, 1) or None,
            min_prompt_bucket=_int(env, "JAX_LLM_MIN_PROMPT_BUCKET", cls.min_prompt_bucket, 1),
            max_prefill_tokens=_int(env, "JAX_LLM_MAX_PREFILL_TOKENS", cls.max_prefill_tokens, 1),
            max_context=_int(env, "JAX_LLM_MAX_CONTEXT", 0, 2) or None,
            default_max_new_tokens=_int(env, "JAX_LLM_DEFAULT_MAX_NEW_TOKENS", cls.default_max_new_tokens, 1),
            request_timeout_s=_float(
                env, "JAX_LLM_REQUEST_TIMEOUT_S", BATCH_TIMEOUT_S if batch else ONLINE_TIMEOUT_S
            ),
            max_payload_bytes=payload_mb * 1024 * 1024,
            compute_dtype=env.get("JAX_LLM_COMPUTE_DTYPE") or None,
            compile_cache_dir=Path(env.get("JAX_LLM_COMPILE_CACHE_DIR") or cls.compile_cache_dir),
            shutdown_grace_s=_float(env, "JAX_LLM_SHUTDOWN_GRACE_S", cls.shutdown_grace_s),
            body_timeout_s=_float(env, "JAX_LLM_BODY_TIMEOUT_S", cls.body_timeout_s),
            batch_transform=batch,
            batch_strategy=strategy,
            max_concurrent_transforms=_int(env, MAX_CONCURRENT_VARIABLE, decode_slots, 1),
            model_name=env.get("JAX_LLM_MODEL_NAME") or cls.model_name,
            tensor_parallel=_auto_int(env, TENSOR_PARALLEL_VARIABLE),
            device_memory_bytes=_int(env, "JAX_LLM_DEVICE_MEMORY_BYTES", 0, 1) or None,
        )

    def context(self, model_max_seq_len: int) -> int:
        """The served context: the model's, or JAX_LLM_MAX_CONTEXT when shorter (a smaller KV cache)."""
        return min(self.max_context or model_max_seq_len, model_max_seq_len)

    def prompt_buckets(self, max_seq_len: int) -> list[int]:
        """Padded prompt lengths to compile: powers of two from `min_prompt_bucket`, then the context."""
        buckets, size = [], min(self.min_prompt_bucket, max_seq_len)
        while size < max_seq_len:
            buckets.append(size)
            size *= 2
        return buckets + [max_seq_len]
