"""Serving fixtures: the tiny training run's model and tokenizer, one compiled runner (in-process), and one
`python -m jax_llm serve` process on its /opt/ml tree over real HTTP, as SageMaker calls it (started by
support.py's `running_server`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from jax_llm.data.tokenizer import load_tokenizer
from jax_llm.model.export import TOKENIZER_FILE, load_model
from jax_llm.serving.engine.runner import ModelRunner
from jax_llm.serving.settings import ServingSettings
from tests.containers.serving.support import SLOTS, running_server


@pytest.fixture(scope="session")
def tiny_model(tiny_training_run):
    """The GPT the tiny training run exported."""
    return load_model(tiny_training_run.model_dir)


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_training_run):
    """The tokenizer the tiny training run exported with its model."""
    return load_tokenizer(tiny_training_run.model_dir / TOKENIZER_FILE)


@pytest.fixture(scope="session")
def runner(tiny_model, tiny_training_run) -> ModelRunner:
    """A runner with 4 slots and the server's default prompt buckets, compiled once for the session."""
    settings = ServingSettings(model_dir=tiny_training_run.model_dir, decode_slots=SLOTS)
    runner = ModelRunner(tiny_model, SLOTS, settings.prompt_buckets(tiny_model.config.max_seq_len))
    runner.warm_up()
    return runner


# ---- The server over HTTP ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def compile_cache(tmp_path_factory) -> Path:
    """JAX's persistent compilation cache, shared by every server of the session (later ones start faster)."""
    return tmp_path_factory.mktemp("compile-cache")


@pytest.fixture(scope="session")
def server(tiny_training_run, tmp_path_factory, compile_cache):
    """One server on the tiny run's /opt/ml tree for the session (TGI, OpenAI and /metrics tests share it)."""
    log_file = tmp_path_factory.mktemp("serve") / "serve.log"
    with running_server(tiny_training_run.root, log_file, compile_cache) as started:
        yield started
