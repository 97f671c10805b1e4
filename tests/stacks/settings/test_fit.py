"""Synth refuses a training or endpoint setting whose GPUs the memory plan says cannot hold it, naming bytes."""

from __future__ import annotations

import json
import re

import pytest

from jax_llm.contract.instances import INSTANCE_TYPES
from jax_llm.contract.memory_plan import serving_need, training_need, usable_bytes
from stacks.settings import Settings, SettingsError
from tests.support import REPO

CONTEXT = json.loads((REPO / "cdk.json").read_text())["context"]


def settings_with(hyperparameters: dict | None = None, **overrides) -> Settings:
    context = {**CONTEXT, **overrides}
    if hyperparameters is not None:
        context["trainingHyperparameters"] = {**CONTEXT["trainingHyperparameters"], **hyperparameters}
    return Settings.from_context(context)


def test_cdk_json_defaults_fit():
    settings = settings_with()
    assert settings.pipeline.instance_type in INSTANCE_TYPES


def test_7b_training_on_one_g5_xlarge_is_refused_naming_the_bytes():
    with pytest.raises(SettingsError) as raised:
        settings_with(
            {"preset": "7b", "batch_size": 8, "seq_len": 2048, "remat": True},
            trainingInstanceType="ml.g5.xlarge",
            trainingInstanceCount=1,
        )
    message = str(raised.value)
    assert raised.value.key == "trainingInstanceType" and raised.value.value == "ml.g5.xlarge"
    need = training_need("7b", 2048, True, 1, 8)
    usable = usable_bytes(INSTANCE_TYPES["ml.g5.xlarge"])
    assert need.total > usable
    # 6.74 B parameters x 16 bytes (fp32 weights, two AdamW moments, gradients) on one GPU: 100 GiB.
    assert f"parameters {need.parameters / 2**30:.1f} GiB" in message and "AdamW state 50.3 GiB" in message
    assert f"{usable / 2**30:.1f} GiB usable" in message and "NVIDIA A10G" in message


def test_a_micro_batch_too_big_for_the_gpu_names_the_accumulation_that_fits():
    with pytest.raises(SettingsError) as raised:
        settings_with({"preset": "7b", "batch_size": 4096, "seq_len": 4096, "remat": True})
    assert raised.value.key == "trainingInstanceType"
    found = re.search(r"grad_accum_steps=(\d+) fits \(at most (\d+) sequence", str(raised.value))
    assert found, str(raised.value)
    accum = int(found[1])
    settings_with(
        {
            "preset": "7b",
            "batch_size": 4096,
            "seq_len": 4096,
            "remat": True,
            "grad_accum_steps": accum,
        },  # the advice is taken: it fits
        endpointInstanceType="ml.p4de.24xlarge",
        endpointDecodeSlots=4,
    )


def test_a_mesh_that_is_not_the_clusters_names_the_hyperparameter():
    with pytest.raises(SettingsError) as raised:
        settings_with({"mesh": "3x8"})
    assert raised.value.key == "trainingHyperparameters" and "3x8 is 24 devices" in str(raised.value)
    assert settings_with({"mesh": "2x16"}).pipeline.hyperparameters["mesh"] == "2x16"


def test_an_endpoint_too_small_for_the_model_and_its_cache_is_refused():
    with pytest.raises(SettingsError) as raised:
        settings_with({"preset": "7b", "seq_len": 2048, "remat": True}, endpointInstanceType="ml.g5.xlarge")
    assert raised.value.key == "endpointInstanceType"
    need = serving_need("7b", 2048, 32)
    assert f"weights {need.weights / 2**30:.1f} GiB + KV cache {need.kv_cache / 2**30:.1f} GiB" in str(
        raised.value
    )
