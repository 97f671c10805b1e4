"""The endpoint's settings: a wrong value stops synth naming the key; derived values follow the decode
slots."""

from __future__ import annotations

import json

import pytest

from jax_llm.contract.serving import DEFAULT_DECODE_SLOTS
from stacks.settings import Settings, SettingsError
from tests.support import REPO

CDK_CONTEXT = json.loads((REPO / "cdk.json").read_text())["context"]


@pytest.mark.parametrize(
    "key, value, allowed",
    [
        ("endpointInitialInstanceCount", 9, "between endpointMinInstanceCount"),
        ("endpointMaxInstanceCount", 0, "an integer >= 1"),
        ("endpointInstanceType", "ml.p3.2xlarge", "one of inferenceInstanceTypes"),
        (
            "modelPackageArn",
            "arn:aws:sagemaker:us-east-1:123456789012:model-package-group/x",
            "a versioned model package ARN",
        ),
        ("endpointTrafficShifting", "ALL_AT_ONCE", "one of CANARY, LINEAR"),
        ("endpointTrafficStepPercent", 100, "<= 99"),
        ("endpointStartupHealthCheckTimeoutSeconds", 30, ">= 60"),
        ("endpointDataCapturePercent", 101, "<= 100"),
        ("endpointDecodeSlots", -1, "an integer >= 0"),
        ("endpointTargetConcurrencyPercent", 5, ">= 10 and <= 100"),
        ("endpointTargetConcurrencyPercent", 150, ">= 10 and <= 100"),
        ("endpointTimeToFirstTokenAlarmMs", 0, "an integer >= 1"),
        ("endpointTimeToFirstTokenAlarmMs", "fast", "an integer >= 1"),
    ],
)
def test_wrong_endpoint_setting_names_the_key(key, value, allowed):
    with pytest.raises(SettingsError, match=f"context key '{key}'") as error:
        Settings.from_context({**CDK_CONTEXT, key: value})
    assert allowed in str(error.value)


def test_a_blue_green_update_that_cannot_finish_in_time_is_refused():
    """Linear 1% steps baked for an hour each would outlast SageMaker's 4-hour update limit."""
    with pytest.raises(SettingsError, match="context key 'endpointBakeSeconds'.*fits SageMaker's 14400 s"):
        Settings.from_context(
            {
                **CDK_CONTEXT,
                "endpointTrafficShifting": "LINEAR",
                "endpointTrafficStepPercent": 1,
                "endpointBakeSeconds": 3600,
            }
        )


def test_a_scaling_target_under_one_request_is_refused():
    """Two decode slots at 25% would ask autoscaling to hold half a request per instance."""
    with pytest.raises(SettingsError, match="context key 'endpointTargetConcurrencyPercent'.*at least one"):
        Settings.from_context(
            {**CDK_CONTEXT, "endpointDecodeSlots": 2, "endpointTargetConcurrencyPercent": 25}
        )


@pytest.mark.parametrize(
    "slots, percent, target, environment",
    [
        (0, 75, DEFAULT_DECODE_SLOTS * 0.75, {}),
        (48, 75, 36.0, {"JAX_LLM_MAX_BATCH": "48"}),
        (48, 50, 24.0, {"JAX_LLM_MAX_BATCH": "48"}),
        (1, 100, 1.0, {"JAX_LLM_MAX_BATCH": "1"}),
    ],
)
def test_scaling_target_and_container_slots_follow_the_decode_slots(slots, percent, target, environment):
    endpoint = Settings.from_context(
        # 48 slots of the 1.3b's 2048-token KV cache need a 48 GB GPU (synth refuses them on ml.g5.xlarge).
        {
            **CDK_CONTEXT,
            "endpointDecodeSlots": slots,
            "endpointTargetConcurrencyPercent": percent,
            "endpointInstanceType": "ml.g6e.2xlarge",
        }
    ).endpoint
    assert endpoint.target_concurrency == target
    assert endpoint.container_environment == environment
