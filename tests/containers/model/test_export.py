"""The exported model directory: what training writes is what serving loads, and damage is reported."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jax_llm.model.config import ModelConfig
from jax_llm.model.export import load_model, read_model_config, save_model
from jax_llm.model.gpt import GPT


@pytest.fixture()
def exported(tmp_path):
    model = GPT(ModelConfig.preset("tiny"), rngs=nnx.Rngs(3))
    tokenizer = tmp_path / "tokenizer.json"
    tokenizer.write_text('{"model": "stand-in"}')
    save_model(
        tmp_path / "model", model, tokenizer, metrics={"val_loss": 2.5}, extra={"training": {"seed": 3}}
    )
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


def test_bfloat16_export_is_format_2_half_the_bytes_and_serves_bfloat16_weights(exported, tmp_path):
    model, float_dir = exported
    save_model(tmp_path / "bf16", model, float_dir / "tokenizer.json", params_dtype="bfloat16")
    config = json.loads((tmp_path / "bf16" / "config.json").read_text())
    assert config["format_version"] == 2 and config["params_dtype"] == "bfloat16"
    float_bytes = (float_dir / "params.npz").stat().st_size
    assert (tmp_path / "bf16" / "params.npz").stat().st_size < 0.55 * float_bytes

    served = load_model(tmp_path / "bf16")
    params = nnx.state(served, nnx.Param)
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(params))
    original = nnx.state(model, nnx.Param)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(original), strict=True):
        np.testing.assert_array_equal(
            np.asarray(a), np.asarray(b.astype(jnp.bfloat16))
        )  # rounded once, exactly
    tokens = jnp.arange(12)[None]
    np.testing.assert_allclose(served(tokens)[0], model(tokens)[0], atol=0.05)


def test_a_format_1_model_written_by_the_previous_exporter_still_loads(exported, tmp_path):
    """np.savez of float32 arrays and format_version 1: what every model exported so far looks like."""
    model, model_dir = exported
    old = tmp_path / "old"
    old.mkdir()
    for name in ("config.json", "tokenizer.json"):
        (old / name).write_bytes((model_dir / name).read_bytes())
    flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
    np.savez(
        old / "params.npz", **{".".join(map(str, p)): np.asarray(v.get_value(), np.float32) for p, v in flat}
    )
    assert json.loads((old / "config.json").read_text())["format_version"] == 1
    tokens = jnp.arange(12)[None]
    np.testing.assert_array_equal(load_model(old)(tokens)[0], model(tokens)[0])
