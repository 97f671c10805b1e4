"""EndpointStack's autoscaling: the scalable target and target tracking on concurrent requests."""

from __future__ import annotations

import json

from jax_llm.contract.serving import DEFAULT_DECODE_SLOTS
from stacks.constructs.endpoint import VARIANT_NAME
from tests.stacks.endpoint_stack.templates import one_resource, resource_properties


def test_scalable_target_on_the_variant_instance_count(default, settings):
    target_id, target = one_resource(default, "AWS::ApplicationAutoScaling::ScalableTarget")
    endpoint_id, _ = one_resource(default, "AWS::SageMaker::Endpoint")
    props = target["Properties"]
    assert props["ServiceNamespace"] == "sagemaker"
    assert props["ScalableDimension"] == "sagemaker:variant:DesiredInstanceCount"
    assert props["ResourceId"] == f"endpoint/{settings.project.name}-endpoint/variant/{VARIANT_NAME}"
    assert (props["MinCapacity"], props["MaxCapacity"]) == (
        settings.endpoint.min_instance_count,
        settings.endpoint.max_instance_count,
    )
    assert json.dumps(props["RoleARN"]).endswith(
        'AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"]]}'
    )
    assert target["DependsOn"] == [endpoint_id]
    assert (
        default.find_resources(
            "AWS::IAM::Role",
            {
                "Properties": {
                    "AssumeRolePolicyDocument": {
                        "Statement": [{"Principal": {"Service": "application-autoscaling.amazonaws.com"}}]
                    }
                }
            },
        )
        == {}
    )


def test_target_tracking_on_concurrent_requests_at_three_quarters_of_the_decode_slots(default, settings):
    target_id, _ = one_resource(default, "AWS::ApplicationAutoScaling::ScalableTarget")
    policy = resource_properties(default, "AWS::ApplicationAutoScaling::ScalingPolicy")
    assert policy["PolicyType"] == "TargetTrackingScaling"
    assert policy["ScalingTargetId"] == {"Ref": target_id}
    # cdk.json: endpointDecodeSlots 0 (the image's DEFAULT_DECODE_SLOTS), endpointTargetConcurrencyPercent 75.
    assert policy["TargetTrackingScalingPolicyConfiguration"] == {
        "PredefinedMetricSpecification": {
            "PredefinedMetricType": "SageMakerVariantConcurrentRequestsPerModelHighResolution"
        },
        "TargetValue": DEFAULT_DECODE_SLOTS * 3 / 4,
        "ScaleOutCooldown": settings.endpoint.scale_out_cooldown_seconds,
        "ScaleInCooldown": settings.endpoint.scale_in_cooldown_seconds,
    }
    # The image's default slot count is not written into the Model: the image alone decides it.
    assert "Environment" not in resource_properties(default, "AWS::SageMaker::Model")["PrimaryContainer"]
