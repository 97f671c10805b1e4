"""Builds the engine from an exported model directory: load, compile every serving shape, start.

Runs in a background thread while the HTTP server already answers /ping with 503.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import time

import jax

from jax_llm.contract.memory_plan import MEMORY_FRACTION, ServedModel, ServingSplit, plan_serving
from jax_llm.contract.serving import COMPILE_CACHE_DIR, DECODE_SLOTS_VARIABLE
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


def device_memory(settings: ServingSettings) -> int | None:
    """Bytes one device may use: JAX_LLM_DEVICE_MEMORY_BYTES, else XLA's limit for the first device (a GPU's
    memory x XLA_PYTHON_CLIENT_MEM_FRACTION); None where XLA keeps no such limit (the CPU)."""
    if settings.device_memory_bytes:
        return settings.device_memory_bytes
    stats = jax.local_devices()[0].memory_stats() or {}
    return stats.get("bytes_limit")


def plan_split(
    settings: ServingSettings, model: ServedModel, context: int, prefill_batch: int
) -> ServingSplit | None:
    """How this server splits the model and how many decode slots its KV cache gets (`plan_serving`), from
    what a device may use; None where that is unknown (then JAX_LLM_TENSOR_PARALLEL or 1, and every slot)."""
    if settings.tensor_parallel:
        tensor_parallel.devices_for(settings.tensor_parallel)  # raises, naming what this instance has
    usable = device_memory(settings)
    if usable is None:
        return None
    return plan_serving(
        model,
        context,
        settings.decode_slots,
        len(jax.local_devices()),
        usable,
        settings.tensor_parallel,
        prefill_batch,
        settings.max_prefill_tokens,
    )


def load_engine(settings: ServingSettings, observe=None, times: StartupTimes | None = None) -> Engine:
    """Loads model and tokenizer from `settings.model_dir`, compiles prefill and decode, starts the engine.
    `observe`: called with every finished generation (the server's metrics); `times`: the start budget,
    filled phase by phase (model_read, device_transfer, compile and warm_up per program, engine_start).

    The model is split over as many of the instance's devices as it needs (`plan_split`), each weight going
    straight to its devices, and the KV cache gets the decode slots that fit in what the weights leave."""
    times = times or StartupTimes()
    start = time.perf_counter()
    with times.phase("import"):  # JAX's backend comes up on its first use, here
        # The share of a GPU the memory plan counts on (cdk.json's trainingEnvironment sets it for training).
        os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", f"{MEMORY_FRACTION:.2f}")
        enable_compilation_cache(settings)
        jax.devices()
    with times.phase("model_read"):
        seed_compilation_cache(settings)
        config = read_model_config(settings.model_dir)
        # Weights in the compute dtype: a float32 export served in bfloat16 takes half the memory, and gives
        # the same answers (the matmuls cast the weights to the compute dtype anyway).
        compute_dtype = settings.compute_dtype or config.compute_dtype
        # Rotary positions have no table to cut: a shorter context is a shorter KV cache and fewer buckets.
        overrides = {
            "compute_dtype": compute_dtype,
            "param_dtype": compute_dtype,
            "max_seq_len": settings.context(config.max_seq_len),
        }
        served = tensor_parallel.served_model(dataclasses.replace(config, **overrides))
        prefill_batch = settings.max_prefill_batch or (8 if jax.default_backend() == "gpu" else 1)
        split = plan_split(settings, served, overrides["max_seq_len"], prefill_batch)
        shards = split.shards if split else settings.tensor_parallel or 1
        slots = min(split.slots, settings.decode_slots) if split else settings.decode_slots
        mesh = tensor_parallel.make_mesh(shards) if shards > 1 else None
        if mesh is not None and served.splits_over(shards):
            overrides["qkv_groups"] = shards  # each device's heads side by side in the fused projection
        tokenizer = load_tokenizer(settings.model_dir / TOKENIZER_FILE)
    if split is not None:
        log.info("serving plan: %s", split.describe())
        if split.slots < settings.decode_slots:
            log.warning(
                "%d of the %d decode slots asked for (%s) fit beside the weights: serving with %d",
                split.slots,
                settings.decode_slots,
                DECODE_SLOTS_VARIABLE,
                split.slots,
            )
    place = tensor_parallel.placer(mesh) if mesh is not None else None
    model = load_model(settings.model_dir, phase=times.phase, place=place, **overrides)
    buckets = settings.prompt_buckets(model.config.max_seq_len)
    with times.phase("device_transfer"):  # the KV cache's allocation
        runner = ModelRunner(
            model,
            slots,
            buckets,
            prefill_batch,
            tokenizer.get_vocab_size(with_added_tokens=True),
            mesh=mesh,
            max_prefill_tokens=settings.max_prefill_tokens,
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
        slots,
        model.config.max_seq_len,
        buckets,
    )
    return engine
