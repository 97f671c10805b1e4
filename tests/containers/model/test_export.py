"""The exported model directory: what training writes is what serving loads, and damage is reported."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jax_llm.model.export import load_model, read_model_config, save_model
from jax_llm.model.gpt import GPT
from jax_llm.model.config import ModelConfig


@pytest.fixture()
def exported(tmp_path):
    model = GPT(ModelConfig.preset("tiny"), rngs=nnx.Rngs(3))
    tokenizer = tmp_path / "tokenizer.json"
    tokenizer.write_text('{"model": "stand-in"}')
    save_model(tmp_path / "model", model, tokenizer, metrics={"val_loss": 2.5}, extra={"training": {"seed": 3}})
    return model, tmp_path / "model"


def test_round_trip_gives_the_same_logits(exported):
    model, model_dir = exported
    tokens = jnp.arange(12)[None]
    np.testing.assert_array_equal(load_model(model_dir)(tokens)[0], model(tokens)[0])
    assert json.loads((model_dir / "metrics.json").read_text()) == {"val_loss": 2.5}
    assert json.loads((model_dir / "config.json").read_text())["training"] == {"seed": 3}
    assert (model_dir / "tokenizer.json").read_text() == '{"model": "stand-in"}'


def test_overrides_change_numerics_not_weights(exported):
    _, model_dir = exported
    assert read_model_config(model_dir, compute_dtype="bfloat16").compute_dtype == "bfloat16"
    params = nnx.state(load_model(model_dir, compute_dtype="bfloat16"), nnx.Param)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))


def test_missing_or_misshapen_parameters_are_named(exported):
    _, model_dir = exported
    params = dict(np.load(model_dir / "params.npz"))
    del params["final_norm.scale"]
    np.savez(model_dir / "params.npz", **params)
    with pytest.raises(ValueError, match="final_norm.scale is missing"):
        load_model(model_dir)
    params["final_norm.scale"] = np.ones(7, np.float32)
    np.savez(model_dir / "params.npz", **params)
    with pytest.raises(ValueError, match=r"final_norm.scale has shape \(7,\)"):
        load_model(model_dir)


def test_unknown_format_version_is_refused(exported):
    _, model_dir = exported
    config = json.loads((model_dir / "config.json").read_text())
    config["format_version"] = 99
    (model_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="format_version 99"):
        load_model(model_dir)
