"""Synth refuses a training or endpoint setting whose GPUs the memory plan says cannot hold it, naming bytes."""

from __future__ import annotations

import json
import re

import pytest

from jax_llm.contract.instances import INSTANCE_TYPES
from jax_llm.contract.memory_plan import ServedModel, plan_serving, training_need, usable_bytes
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
    # What the server itself would do on that GPU: bf16 weights, and only a few of the 32 slots' KV cache beside.
    split = plan_serving(
        ServedModel.from_table("7b"), 2048, 32, 1, usable_bytes(INSTANCE_TYPES["ml.g5.xlarge"])
    )
    assert 1 <= split.slots < 8
    assert f"{split.slots} fit beside the weights over 1 GPU(s): {split.need.describe()}" in str(raised.value)
    assert "weights 12.6 GiB" in str(raised.value)


def test_a_7b_endpoint_on_four_a10gs_is_split_over_them_as_the_server_splits_it():
    hyperparameters = {"preset": "7b", "seq_len": 2048, "remat": True}
    settings = settings_with(
        hyperparameters, endpointInstanceType="ml.g5.12xlarge"
    )  # the server splits it 4 ways
    assert settings.endpoint.container_environment == {}  # auto: nothing to set
    with pytest.raises(SettingsError) as raised:  # but not when one GPU is asked for
        settings_with(hyperparameters, endpointInstanceType="ml.g5.12xlarge", endpointTensorParallel=1)
    assert raised.value.key == "endpointInstanceType" and "over 1 GPU(s)" in str(raised.value)
    pinned = settings_with(hyperparameters, endpointInstanceType="ml.g5.12xlarge", endpointTensorParallel=4)
    assert pinned.endpoint.container_environment == {"JAX_LLM_TENSOR_PARALLEL": "4"}
    with pytest.raises(SettingsError) as raised:
        settings_with(hyperparameters, endpointInstanceType="ml.g5.12xlarge", endpointTensorParallel=8)
    assert raised.value.key == "endpointTensorParallel" and "at most 4" in str(raised.value)


def test_an_inference_component_gets_only_the_gpus_one_copy_reserves():
    ic = {"endpointMode": "inference-components", "endpointMinInstanceCount": 0}
    hyperparameters = {"preset": "7b", "seq_len": 2048, "remat": True}
    with pytest.raises(SettingsError) as raised:  # one A10G per copy cannot hold 7b's 32 slots
        settings_with(
            hyperparameters, endpointInstanceType="ml.g5.12xlarge", endpointCopyAccelerators=1, **ic
        )
    assert raised.value.key == "endpointCopyAccelerators" and "one copy reserves" in str(raised.value)
    settings_with(hyperparameters, endpointInstanceType="ml.g5.12xlarge", endpointCopyAccelerators=4, **ic)
    with pytest.raises(SettingsError) as raised:
        settings_with(
            hyperparameters, endpointInstanceType="ml.g5.12xlarge", endpointCopyAccelerators=5, **ic
        )
    assert raised.value.key == "endpointCopyAccelerators" and "between 1 and the 4 GPU(s)" in str(
        raised.value
    )


def test_a_float32_run_is_served_in_float32_and_needs_twice_the_weight_bytes():
    endpoint = {"endpointInstanceType": "ml.g5.xlarge", "endpointDecodeSlots": 2}
    settings_with({"preset": "7b", "seq_len": 2048, "remat": True}, **endpoint)  # bf16: 12.6 GiB of weights
    with pytest.raises(SettingsError) as raised:
        settings_with(
            {"preset": "7b", "seq_len": 2048, "remat": True, "compute_dtype": "float32"}, **endpoint
        )
    assert raised.value.key == "endpointInstanceType" and "weights 25.1 GiB" in str(raised.value)
