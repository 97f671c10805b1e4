"""ModelConfig presets and their invariants."""

import dataclasses

import pytest

from jax_llm.model.config import PRESETS, ModelConfig


@pytest.mark.parametrize(("name", "millions"), [("125m", 110), ("350m", 336), ("1.3b", 1275)])
def test_presets_have_the_sizes_their_names_promise(name, millions):
    # Tied embeddings with a 32k vocabulary: GPT-3's table counts the output matrix separately.
    assert round(ModelConfig.preset(name).num_params() / 1e6) == millions


def test_preset_overrides_and_unknown_name():
    assert ModelConfig.preset("tiny", vocab_size=1024).vocab_size == 1024
    with pytest.raises(ValueError, match=r"unknown preset 'huge'.*'tiny'"):
        ModelConfig.preset("huge")


def test_heads_must_divide_width():
    with pytest.raises(ValueError, match="not divisible"):
        dataclasses.replace(PRESETS["tiny"], n_heads=3)


def test_attention_falls_back_to_xla_off_gpu_or_in_float32():
    assert ModelConfig.preset("tiny").attention_implementation() == "xla"  # this machine has no GPU
    assert ModelConfig.preset("tiny", attention="cudnn").attention_implementation() == "cudnn"


def test_flops_per_token_counts_attention():
    config = ModelConfig.preset("125m")
    short, long = config.flops_per_token(128), config.flops_per_token(2048)
    assert long - short == 12 * config.n_layers * config.d_model * (2048 - 128)
    assert short > 6 * config.num_params()  # the tied output projection is a matmul too
