"""In-process serving fixtures: the tiny training run's model and tokenizer, and one compiled runner."""

from __future__ import annotations

import pytest

from jax_llm.model.export import TOKENIZER_FILE, load_model
from jax_llm.serving.runner import ModelRunner
from jax_llm.serving.settings import ServingSettings
from jax_llm.data.tokenizer import load_tokenizer

SLOTS = 4


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
    settings = ServingSettings(model_dir=tiny_training_run.model_dir, max_batch=SLOTS)
    runner = ModelRunner(tiny_model, SLOTS, settings.prompt_buckets(tiny_model.config.max_seq_len))
    runner.warm_up()
    return runner
