"""Server settings from SageMaker's environment variables and the server's own."""

from __future__ import annotations

from pathlib import Path

import pytest

from jax_llm.serving.settings import ServingSettings, SettingsError


def test_defaults_follow_the_endpoint_contract():
    settings = ServingSettings.from_env({})
    assert settings.port == 8080 and settings.model_dir == Path("/opt/ml/model")
    assert settings.max_payload_bytes == 6 * 1024 * 1024
    assert settings.request_timeout_s < 60  # the client's fixed limit
    assert settings.shutdown_grace_s < 30  # SIGKILL follows SIGTERM after 30 s
    assert settings.max_prefill_batch is None  # chosen by the loader from the backend


def test_sagemaker_and_server_variables_override():
    settings = ServingSettings.from_env(
        {
            "SAGEMAKER_BASE_DIR": "/tmp/ml",
            "SAGEMAKER_BIND_TO_PORT": "9000",
            "JAX_LLM_MAX_BATCH": "8",
            "JAX_LLM_MAX_QUEUE": "0",
            "JAX_LLM_MAX_PREFILL_BATCH": "2",
            "JAX_LLM_REQUEST_TIMEOUT_S": "2.5",
            "JAX_LLM_COMPUTE_DTYPE": "bfloat16",
            "JAX_LLM_COMPILE_CACHE_DIR": "/tmp/cc",
        }
    )
    assert (settings.model_dir, settings.port, settings.decode_slots, settings.max_queue) == (
        Path("/tmp/ml/model"),
        9000,
        8,
        0,
    )
    assert settings.request_timeout_s == 2.5 and settings.compute_dtype == "bfloat16"
    assert settings.max_prefill_batch == 2
    assert settings.compile_cache_dir == Path("/tmp/cc")
    assert settings.max_concurrent_transforms == 8  # fills the slots by default


def test_batch_transform_allows_bigger_payloads_and_longer_requests():
    settings = ServingSettings.from_env(
        {
            "SAGEMAKER_BATCH": "true",
            "SAGEMAKER_MAX_PAYLOAD_IN_MB": "50",
            "SAGEMAKER_BATCH_STRATEGY": "MultiRecord",
            "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS": "4",
        }
    )
    assert settings.batch_transform and settings.max_payload_bytes == 50 * 1024 * 1024
    assert settings.request_timeout_s > 60
    assert (settings.batch_strategy, settings.max_concurrent_transforms) == ("MULTI_RECORD", 4)


@pytest.mark.parametrize(
    "env, key",
    [
        ({"SAGEMAKER_BIND_TO_PORT": "http"}, "SAGEMAKER_BIND_TO_PORT"),
        ({"JAX_LLM_MAX_BATCH": "0"}, "JAX_LLM_MAX_BATCH"),
        ({"JAX_LLM_MAX_CONTEXT": "1"}, "JAX_LLM_MAX_CONTEXT"),
        ({"JAX_LLM_MAX_CONTEXT": "long"}, "JAX_LLM_MAX_CONTEXT"),
        ({"JAX_LLM_REQUEST_TIMEOUT_S": "-1"}, "JAX_LLM_REQUEST_TIMEOUT_S"),
        ({"SAGEMAKER_BATCH_STRATEGY": "ALL"}, "SAGEMAKER_BATCH_STRATEGY"),
    ],
)
def test_bad_values_name_the_variable(env, key):
    with pytest.raises(SettingsError, match=key):
        ServingSettings.from_env(env)


def test_prompt_buckets_double_up_to_the_context():
    settings = ServingSettings(model_dir=Path("."), min_prompt_bucket=16)
    assert settings.prompt_buckets(128) == [16, 32, 64, 128]
    assert settings.prompt_buckets(100) == [16, 32, 64, 100]
    assert settings.prompt_buckets(8) == [8]


def test_max_context_caps_the_served_context_never_raises_it():
    assert ServingSettings.from_env({}).context(1024) == 1024
    capped = ServingSettings.from_env({"JAX_LLM_MAX_CONTEXT": "256"})
    assert capped.context(1024) == 256
    assert capped.context(128) == 128  # a model trained on less is served at what it was trained on
    assert capped.prompt_buckets(capped.context(1024)) == [16, 32, 64, 128, 256]
