"""Builds the engine from an exported model directory: load, compile every serving shape, start.

Runs in a background thread while the HTTP server already answers /ping with 503.
"""

from __future__ import annotations

import logging
import time

import jax

from jax_llm.model.export import TOKENIZER_FILE, load_model, read_model_config
from jax_llm.serving.engine import Engine
from jax_llm.serving import tensor_parallel
from jax_llm.serving.runner import ModelRunner
from jax_llm.serving.settings import ServingSettings
from jax_llm.data.tokenizer import load_tokenizer

log = logging.getLogger(__name__)


def enable_compilation_cache(settings: ServingSettings) -> None:
    """Turns on JAX's persistent compilation cache so that a restarted server skips XLA compilation."""
    settings.compile_cache_dir.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(settings.compile_cache_dir))
    # Defaults skip programs that compile in under a second, which is every program of a small model.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def load_engine(settings: ServingSettings, observe=None) -> Engine:
    """Loads model and tokenizer from `settings.model_dir`, compiles prefill and decode, starts the engine.
    `observe`: called with every finished generation (the server's metrics)."""
    start = time.perf_counter()
    enable_compilation_cache(settings)
    overrides = {"compute_dtype": settings.compute_dtype} if settings.compute_dtype else {}
    # Rotary positions have no table to cut: a shorter context is only a shorter KV cache and fewer buckets.
    overrides["max_seq_len"] = settings.context(read_model_config(settings.model_dir).max_seq_len)
    model = load_model(settings.model_dir, **overrides)
    tokenizer = load_tokenizer(settings.model_dir / TOKENIZER_FILE)
    buckets = settings.prompt_buckets(model.config.max_seq_len)
    prefill_batch = settings.max_prefill_batch or (8 if jax.default_backend() == "gpu" else 1)
    mesh = tensor_parallel.make_mesh(settings.tensor_parallel) if settings.tensor_parallel > 1 else None
    runner = ModelRunner(model, settings.max_batch, buckets, prefill_batch, mesh=mesh)
    if mesh is not None:
        log.info("tensor parallel over %d devices: %s", mesh.devices.size, tensor_parallel.describe(runner.params))
    runner.warm_up()
    engine = Engine(runner, tokenizer, settings.max_queue, settings.default_max_new_tokens, observe=observe)
    engine.start()
    log.info(
        "model from %s ready in %.1f s on %s: %d slots, context %d, prompt buckets %s",
        settings.model_dir,
        time.perf_counter() - start,
        jax.devices()[0].device_kind,
        settings.max_batch,
        model.config.max_seq_len,
        buckets,
    )
    return engine
