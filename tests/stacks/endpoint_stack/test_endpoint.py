"""EndpointStack's Model, endpoint config (variant, data capture, volume key) and blue/green endpoint."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Annotations, Match

from stacks.constructs.endpoint import VARIANT_NAME, has_instance_storage
from tests.stacks.endpoint_stack.templates import EBS_ONLY_TYPE, one_resource, resource_properties


def test_model_is_network_isolated_and_runs_as_the_training_execution_role(synthesized_app, default):
    model = resource_properties(default, "AWS::SageMaker::Model")
    assert model["EnableNetworkIsolation"] is True
    role_output = model["ExecutionRoleArn"]["Fn::GetStackOutput"]
    assert role_output["StackName"] == "TrainingStack"
    training = synthesized_app.template_json["TrainingStack"]
    assert "ExecutionRole" in role_output["OutputName"] and role_output["OutputName"] in training["Outputs"]


def test_model_is_created_after_the_execution_role_policy(synthesized_app):
    """The ECR-pull race: the Model depends on the role's policy, so its whole stack deploys after it."""
    training, endpoint = synthesized_app.stacks["TrainingStack"], synthesized_app.stacks["EndpointStack"]
    model = endpoint.node.find_child("Serving").model
    assert training.execution_role_policy in model.node.dependencies
    assert training in endpoint.dependencies


def test_endpoint_config_variant(default, settings):
    (variant,) = resource_properties(default, "AWS::SageMaker::EndpointConfig")["ProductionVariants"]
    model_id, _ = one_resource(default, "AWS::SageMaker::Model")
    assert variant == {
        "VariantName": VARIANT_NAME,
        "ModelName": {"Fn::GetAtt": [model_id, "ModelName"]},
        "InstanceType": "ml.g5.xlarge",
        "InitialInstanceCount": settings.endpoint.initial_instance_count,
        "InitialVariantWeight": 1,
        "ContainerStartupHealthCheckTimeoutInSeconds": settings.endpoint.startup_timeout_seconds,
        "ModelDataDownloadTimeoutInSeconds": settings.endpoint.download_timeout_seconds,
    }


def test_data_capture_of_requests_and_responses_to_the_artifacts_bucket(default, settings):
    capture = resource_properties(default, "AWS::SageMaker::EndpointConfig")["DataCaptureConfig"]
    assert capture["EnableCapture"] is True
    assert capture["InitialSamplingPercentage"] == settings.endpoint.data_capture_percent
    assert capture["CaptureOptions"] == [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}]
    assert capture["CaptureContentTypeHeader"] == {"JsonContentTypes": ["application/json"]}
    prefix, bucket, suffix = capture["DestinationS3Uri"]["Fn::Join"][1]
    assert (prefix, suffix) == ("s3://", "/data-capture")
    assert "Artifacts" in bucket["Fn::GetStackOutput"]["OutputName"]
    assert "EncryptionKey" in capture["KmsKeyId"]["Fn::GetStackOutput"]["OutputName"]


def test_no_volume_key_on_an_instance_type_with_nvme_storage_and_a_synth_note(synthesized_app, default):
    config_id, config = one_resource(default, "AWS::SageMaker::EndpointConfig")
    assert "KmsKeyId" not in config["Properties"]
    notes = Annotations.from_stack(synthesized_app.stacks["EndpointStack"]).find_info(
        "/EndpointStack/Serving/Config",
        Match.string_like_regexp("ml.g5.xlarge has local NVMe instance storage"),
    )
    assert len(notes) == 1


def test_volume_key_on_an_ebs_only_instance_type(pinned):
    config = resource_properties(pinned.templates["EndpointStack"], "AWS::SageMaker::EndpointConfig")
    assert config["ProductionVariants"][0]["InstanceType"] == EBS_ONLY_TYPE
    assert "EncryptionKey" in config["KmsKeyId"]["Fn::GetStackOutput"]["OutputName"]
    assert "DataCaptureConfig" not in config  # endpointDataCapturePercent 0 turns capture off


@pytest.mark.parametrize(
    "instance_type, local",
    [
        ("ml.g5.xlarge", True),
        ("ml.g6.2xlarge", True),
        ("ml.g6e.2xlarge", True),
        ("ml.p4d.24xlarge", True),
        ("ml.p4de.24xlarge", True),
        ("ml.p5.48xlarge", True),
        ("ml.g4dn.xlarge", True),
        ("ml.m5d.large", True),
        ("ml.c6id.xlarge", True),
        ("ml.p3dn.24xlarge", True),
        ("ml.p3.2xlarge", False),
        ("ml.p2.xlarge", False),
        ("ml.m5.xlarge", False),
        ("ml.c7i.large", False),
        ("ml.inf2.xlarge", False),
    ],
)
def test_instance_storage_rule(instance_type, local):
    assert has_instance_storage(instance_type) is local


def test_endpoint_updates_blue_green_with_canary_and_rolls_back_on_the_three_alarms(default, settings):
    endpoint = resource_properties(default, "AWS::SageMaker::Endpoint")
    config_id, _ = one_resource(default, "AWS::SageMaker::EndpointConfig")
    alarms = {
        alarm["Properties"]["MetricName"]: logical_id
        for logical_id, alarm in default.find_resources("AWS::CloudWatch::Alarm").items()
    }
    assert endpoint["EndpointName"] == f"{settings.project.name}-endpoint"
    assert endpoint["EndpointConfigName"] == {"Fn::GetAtt": [config_id, "EndpointConfigName"]}
    assert endpoint["DeploymentConfig"] == {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "CANARY",
                "WaitIntervalInSeconds": settings.endpoint.bake_seconds,
                "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": settings.endpoint.traffic_step_percent},
            },
            "TerminationWaitInSeconds": settings.endpoint.termination_wait_seconds,
            "MaximumExecutionTimeoutInSeconds": settings.endpoint.deployment_timeout_seconds,
        },
        "AutoRollbackConfiguration": {
            "Alarms": [
                {"AlarmName": {"Ref": alarms["Invocation5XXErrors"]}},
                {"AlarmName": {"Ref": alarms["ModelLatency"]}},
                {"AlarmName": {"Ref": alarms["TimeToFirstToken"]}},
            ]
        },
    }


def test_update_keeps_the_scaled_instance_count(default):
    """A new endpoint config's InitialInstanceCount must not replace the count autoscaling reached."""
    endpoint = resource_properties(default, "AWS::SageMaker::Endpoint")
    assert endpoint["RetainAllVariantProperties"] is True
    assert endpoint["ExcludeRetainedVariantProperties"] == [{"VariantPropertyType": "DataCaptureConfig"}]


def test_linear_shifting_and_no_retention_without_autoscaling(pinned):
    template = pinned.templates["EndpointStack"]
    endpoint = resource_properties(template, "AWS::SageMaker::Endpoint")
    routing = endpoint["DeploymentConfig"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert routing["Type"] == "LINEAR" and "CanarySize" not in routing
    assert routing["LinearStepSize"] == {"Type": "CAPACITY_PERCENT", "Value": 20}
    # Five 20% steps, each baked: download + startup + 5 bakes + termination wait (cdk.json's values).
    assert (
        endpoint["DeploymentConfig"]["BlueGreenUpdatePolicy"]["MaximumExecutionTimeoutInSeconds"]
        == 900 + 900 + 5 * 600 + 300
    )
    # Without autoscaling endpointInitialInstanceCount is the count, so it must not be retained.
    assert endpoint["RetainAllVariantProperties"] is False
    assert template.find_resources("AWS::ApplicationAutoScaling::ScalableTarget") == {}
