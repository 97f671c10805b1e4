"""EndpointStack's templates, synthesized once per session: cdk.json's defaults (the session synth) and the
pinned variant (explicit ARN, EBS-only GPU type, linear shifting, no autoscaling, no capture)."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Template

from stacks.settings import Settings
from tests.stacks.endpoint_stack.templates import EBS_ONLY_TYPE, PINNED_ARN


@pytest.fixture(scope="session")
def default(synthesized_app) -> Template:
    """EndpointStack from cdk.json's defaults: no modelPackageArn, ml.g5.xlarge, canary, autoscaling."""
    return synthesized_app.templates["EndpointStack"]


@pytest.fixture(scope="session")
def settings(synthesized_app) -> Settings:
    return Settings.from_context(synthesized_app.app)


@pytest.fixture(scope="session")
def pinned(synth_app, settings):
    """The other variant: explicit ARN, EBS-only GPU type, linear shifting, no autoscaling, no capture,
    48 decode slots, resources destroyed with the stack."""
    return synth_app(
        {
            "modelPackageArn": PINNED_ARN,
            "endpointInstanceType": EBS_ONLY_TYPE,
            "inferenceInstanceTypes": [*settings.pipeline.inference_instance_types, EBS_ONLY_TYPE],
            "endpointTrafficShifting": "LINEAR",
            "endpointTrafficStepPercent": 20,
            "endpointAutoscaling": False,
            "endpointDataCapturePercent": 0,
            "endpointDecodeSlots": 48,
            "removalPolicy": "destroy",
        }
    )
