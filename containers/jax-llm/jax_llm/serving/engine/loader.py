"""Builds the engine from an exported model directory: load, compile every serving shape, start.

Runs in a background thread while the HTTP server already answers /ping with 503.
"""

from __future__ import annotations

import logging
import shutil
import time

import jax

from jax_llm.contract.serving import COMPILE_CACHE_DIR
from jax_llm.data.tokenizer import load_tokenizer
from jax_llm.model.export import TOKENIZER_FILE, load_model, read_model_config
from jax_llm.serving.engine import tensor_parallel
from jax_llm.serving.engine.engine import Engine
from jax_llm.serving.engine.runner import ModelRunner
from jax_llm.serving.settings import ServingSettings
from jax_llm.serving.startup import StartupTimes

log = logging.getLogger(__name__)


def seed_compilation_cache(settings: ServingSettings) -> int:
    """Copies the model's own `compile_cache/` entries (if it ships any) into the writable cache directory,
    so a fresh instance reads its serving programs instead of compiling them. Returns the entries copied.

    The model directory is read only as SageMaker's input: a cache miss is written to the local cache only.
    An entry compiled for another device kind or JAX version has another key, so it is never read."""
    seed = settings.model_dir / COMPILE_CACHE_DIR
    target = settings.compile_cache_dir
    if not seed.is_dir() or seed.resolve() == target.resolve():
        return 0
    copied = 0
    for entry in seed.rglob("*"):
        destination = target / entry.relative_to(seed)
        if entry.is_file() and not destination.exists():
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(entry, destination)
            copied += 1
    log.info("seeded the compilation cache %s with %d entries from %s", target, copied, seed)
    return copied


def enable_compilation_cache(settings: ServingSettings) -> None:
    """Turns on JAX's persistent compilation cache so that a restarted server skips XLA compilation."""
    settings.compile_cache_dir.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(settings.compile_cache_dir))
    # Defaults skip programs that compile in under a second, which is every program of a small model.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    # By default JAX also points XLA's GPU autotuning cache into this directory, and that path then enters
    # every entry's key: entries compiled under one directory would miss under another (seen on CPU too).
    # Without it a key depends only on the program, the device kind and the versions, so entries shipped in
    # the model (`seed_compilation_cache`) hit wherever the local cache lives. An executable read from the
    # cache is already autotuned; only a miss autotunes again, as on any fresh instance.
    jax.config.update("jax_persistent_cache_enable_xla_caches", "")


def load_engine(settings: ServingSettings, observe=None, times: StartupTimes | None = None) -> Engine:
    """Loads model and tokenizer from `settings.model_dir`, compiles prefill and decode, starts the engine.
    `observe`: called with every finished generation (the server's metrics); `times`: the start budget,
    filled phase by phase (model_read, device_transfer, compile and warm_up per program, engine_start)."""
    times = times or StartupTimes()
    start = time.perf_counter()
    with times.phase("import"):  # JAX's backend comes up on its first use, here
        enable_compilation_cache(settings)
        jax.devices()
    overrides = {"compute_dtype": settings.compute_dtype} if settings.compute_dtype else {}
    with times.phase("model_read"):
        seed_compilation_cache(settings)
        # Rotary positions have no table to cut: a shorter context is a shorter KV cache and fewer buckets.
        overrides["max_seq_len"] = settings.context(read_model_config(settings.model_dir).max_seq_len)
        tokenizer = load_tokenizer(settings.model_dir / TOKENIZER_FILE)
    model = load_model(settings.model_dir, phase=times.phase, **overrides)
    buckets = settings.prompt_buckets(model.config.max_seq_len)
    prefill_batch = settings.max_prefill_batch or (8 if jax.default_backend() == "gpu" else 1)
    with times.phase("device_transfer"):  # the KV cache's allocation
        mesh = tensor_parallel.make_mesh(settings.tensor_parallel) if settings.tensor_parallel > 1 else None
        runner = ModelRunner(
            model,
            settings.decode_slots,
            buckets,
            prefill_batch,
            tokenizer.get_vocab_size(with_added_tokens=True),
            mesh=mesh,
        )
    if mesh is not None:
        log.info(
            "tensor parallel over %d devices: %s", mesh.devices.size, tensor_parallel.describe(runner.params)
        )
    runner.warm_up(times.program)
    with times.phase("engine_start"):
        engine = Engine(
            runner, tokenizer, settings.max_queue, settings.default_max_new_tokens, observe=observe
        )
        engine.start()
    log.info(
        "model from %s loaded in %.1f s on %s: %d slots, context %d, prompt buckets %s",
        settings.model_dir,
        time.perf_counter() - start,
        jax.devices()[0].device_kind,
        settings.decode_slots,
        model.config.max_seq_len,
        buckets,
    )
    return engine
