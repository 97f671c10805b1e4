"""EndpointStack with endpointMode=inference-components: managed instance scaling down to zero, the model
as an inference component with rolling updates and the rollback alarms, copy autoscaling with the
scale-out-from-zero path, per-component monitoring, and the requests CloudFormation makes, validated by
botocore. One synth for the module (cdk.json's defaults plus the mode)."""

from __future__ import annotations

import json
from typing import Any

import botocore.session
import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk.assertions import Annotations, Match, Template
from botocore.validate import ParamValidator

from stacks.constructs.autoscaling import COPY_DIMENSION, NO_CAPACITY_METRIC, EndpointAutoscaling
from stacks.constructs.inference_component import inference_component_name
from stacks.constructs.serving_metrics import component_log_group_name
from stacks.settings import Settings, SettingsError
from tests.stacks.cfn_values import TemplateValues
from tests.stacks.support import cdk_json_context

MODE = {"endpointMode": "inference-components"}
EXECUTION_ROLE = "arn:aws:iam::123456789012:role/jax-llm-execution"


@pytest.fixture(scope="module")
def app(synth_app):
    """The whole app with the endpoint in inference-components mode (cdk.json's defaults otherwise)."""
    return synth_app(MODE)


@pytest.fixture(scope="module")
def template(app) -> Template:
    return app.templates["EndpointStack"]


@pytest.fixture(scope="module")
def resources(app) -> dict[str, dict]:
    return app.template_json["EndpointStack"]["Resources"]


@pytest.fixture(scope="module")
def settings(app) -> Settings:
    return Settings.from_context(app.app)


@pytest.fixture(scope="module")
def component_name(settings) -> str:
    return inference_component_name(f"{settings.project.name}-endpoint")


def _of_type(resources: dict[str, dict], kind: str) -> dict[str, dict]:
    return {lid: r for lid, r in resources.items() if r["Type"] == kind}


def _one(resources: dict[str, dict], kind: str) -> tuple[str, dict[str, Any]]:
    found = _of_type(resources, kind)
    assert len(found) == 1, f"expected one {kind}, found {sorted(found)}"
    logical_id, resource = next(iter(found.items()))
    return logical_id, resource["Properties"]


# --- the endpoint: instances only, scaled by SageMaker down to zero --------------------------------------


def test_the_variant_holds_instances_that_sagemaker_scales_down_to_zero(resources, settings):
    _, config = _one(resources, "AWS::SageMaker::EndpointConfig")
    (variant,) = config["ProductionVariants"]
    assert "ModelName" not in variant  # the component holds the model
    assert variant["InstanceType"] == settings.endpoint.instance_type
    assert variant["ManagedInstanceScaling"] == {
        "Status": "ENABLED",
        "MinInstanceCount": 0,
        "MaxInstanceCount": settings.endpoint.max_instance_count,
    }
    assert variant["RoutingConfig"] == {"RoutingStrategy": "LEAST_OUTSTANDING_REQUESTS"}
    # An endpoint of inference components names their role on its config.
    assert "ExecutionRoleArn" in config
    assert "DataCaptureConfig" not in config


def test_data_capture_that_is_not_applied_is_said_at_synth(app):
    infos = Annotations.from_stack(app.stacks["EndpointStack"]).find_info(
        "*", Match.string_like_regexp("endpointDataCapturePercent is not applied")
    )
    assert len(infos) == 1


def test_the_endpoint_has_no_blue_green_config_of_its_own(resources):
    _, endpoint = _one(resources, "AWS::SageMaker::Endpoint")
    assert "DeploymentConfig" not in endpoint and "RetainAllVariantProperties" not in endpoint


# --- the component: the model, its compute, its copies, its rolling updates --------------------------


def test_the_component_serves_the_model_with_its_compute_and_copies(resources, settings, component_name):
    model_id, model = _one(resources, "AWS::SageMaker::Model")
    endpoint_id, _ = _one(resources, "AWS::SageMaker::Endpoint")
    _, component = _one(resources, "AWS::SageMaker::InferenceComponent")
    endpoint = settings.endpoint
    assert model["EnableNetworkIsolation"] is True
    assert component["InferenceComponentName"] == component_name
    assert component["EndpointName"] == {"Fn::GetAtt": [endpoint_id, "EndpointName"]}
    assert component["VariantName"] == "primary"
    spec = component["Specification"]
    assert spec["ModelName"] == {"Fn::GetAtt": [model_id, "ModelName"]}
    assert spec["ComputeResourceRequirements"] == {
        "NumberOfAcceleratorDevicesRequired": endpoint.copy_accelerators,
        "MinMemoryRequiredInMb": endpoint.copy_memory_mb,
    }
    assert spec["StartupParameters"] == {
        "ContainerStartupHealthCheckTimeoutInSeconds": endpoint.startup_timeout_seconds,
        "ModelDataDownloadTimeoutInSeconds": endpoint.download_timeout_seconds,
    }
    assert component["RuntimeConfig"] == {"CopyCount": endpoint.initial_copy_count}


def test_a_release_rolls_copies_over_in_batches_and_the_three_alarms_roll_it_back(resources, settings):
    _, component = _one(resources, "AWS::SageMaker::InferenceComponent")
    deployment = component["DeploymentConfig"]
    endpoint = settings.endpoint
    assert deployment["RollingUpdatePolicy"] == {
        "MaximumBatchSize": {"Type": "CAPACITY_PERCENT", "Value": endpoint.traffic_step_percent},
        "WaitIntervalInSeconds": endpoint.bake_seconds,
        "MaximumExecutionTimeoutInSeconds": endpoint.deployment_timeout_seconds,
        "RollbackMaximumBatchSize": {"Type": "CAPACITY_PERCENT", "Value": 100},
    }
    alarms = _of_type(resources, "AWS::CloudWatch::Alarm")
    rollback = {
        alarms[a["AlarmName"]["Ref"]]["Properties"]["AlarmName"]
        for a in deployment["AutoRollbackConfiguration"]["Alarms"]
    }
    prefix = f"{settings.project.name}-endpoint"
    assert rollback == {
        f"{prefix}-5xx-errors",
        f"{prefix}-model-latency-p90",
        f"{prefix}-time-to-first-token-p90",
    }


def test_rollback_alarms_watch_the_component_s_metrics(resources, component_name):
    by_name = {
        r["Properties"]["AlarmName"]: r["Properties"]
        for r in _of_type(resources, "AWS::CloudWatch::Alarm").values()
    }
    for suffix in ("5xx-errors", "model-latency-p90"):
        alarm = next(a for name, a in by_name.items() if name.endswith(suffix))
        assert alarm["Namespace"] == "AWS/SageMaker"
        assert alarm["Dimensions"] == [{"Name": "InferenceComponentName", "Value": component_name}]


# --- copies: target tracking per copy, and out of zero on the no-capacity alarm -----------------------


def test_copies_track_concurrent_requests_per_copy_down_to_zero(resources, settings, component_name):
    target_id, target = _one(resources, "AWS::ApplicationAutoScaling::ScalableTarget")
    assert target["ResourceId"] == f"inference-component/{component_name}"
    assert target["ScalableDimension"] == COPY_DIMENSION
    assert (target["MinCapacity"], target["MaxCapacity"]) == (0, settings.endpoint.max_copy_count)
    policies = {
        p["Properties"]["PolicyType"]: p
        for p in _of_type(resources, "AWS::ApplicationAutoScaling::ScalingPolicy").values()
    }
    tracking = policies["TargetTrackingScaling"]["Properties"]["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["PredefinedMetricSpecification"] == {
        "PredefinedMetricType": "SageMakerInferenceComponentConcurrentRequestsPerCopyHighResolution"
    }
    assert tracking["TargetValue"] == settings.endpoint.target_concurrency
    # Registered only once the component exists.
    component_id, _ = _one(resources, "AWS::SageMaker::InferenceComponent")
    assert component_id in resources[target_id]["DependsOn"]


def test_a_request_that_finds_no_copy_starts_one(resources, component_name):
    """The documented path out of zero: a step policy (+1 copy) on the NoCapacityInvocationFailures alarm."""
    step_id, step = next(
        (lid, r["Properties"])
        for lid, r in _of_type(resources, "AWS::ApplicationAutoScaling::ScalingPolicy").items()
        if r["Properties"]["PolicyType"] == "StepScaling"
    )
    config = step["StepScalingPolicyConfiguration"]
    assert config["AdjustmentType"] == "ChangeInCapacity"
    assert config["StepAdjustments"] == [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}]
    alarm = next(
        r["Properties"]
        for r in _of_type(resources, "AWS::CloudWatch::Alarm").values()
        if r["Properties"].get("MetricName") == NO_CAPACITY_METRIC
    )
    assert alarm["Namespace"] == "AWS/SageMaker"
    assert alarm["Dimensions"] == [{"Name": "InferenceComponentName", "Value": component_name}]
    assert alarm["Threshold"] == 1 and alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["AlarmActions"] == [{"Ref": step_id}]


def _autoscaling_in_a_bare_stack(**overrides) -> dict[str, dict]:
    settings = Settings.from_context({**cdk_json_context(), **MODE, **overrides}).endpoint
    stack = Stack(App(), "Bare")
    endpoint = sagemaker.CfnEndpoint(stack, "Endpoint", endpoint_config_name="c")
    EndpointAutoscaling(
        stack,
        "Autoscaling",
        settings=settings,
        endpoint_name="e",
        variant_name="primary",
        endpoint=endpoint,
        component_name="e-model",
    )
    return Template.from_stack(stack).to_json()["Resources"]


def test_with_a_floor_of_copies_there_is_no_path_from_zero_to_add():
    resources = _autoscaling_in_a_bare_stack(endpointMinCopyCount=1, endpointInitialCopyCount=1)
    _, target = _one(resources, "AWS::ApplicationAutoScaling::ScalableTarget")
    assert target["MinCapacity"] == 1
    policies = _of_type(resources, "AWS::ApplicationAutoScaling::ScalingPolicy").values()
    assert [r["Properties"]["PolicyType"] for r in policies] == ["TargetTrackingScaling"]
    assert _of_type(resources, "AWS::CloudWatch::Alarm") == {}


# --- monitoring: the component's log group, metric filters and dashboard -------------------------------


def test_server_metric_lines_are_read_from_the_component_s_log_group(resources, component_name):
    log_group_id, log_group = next(
        (lid, r["Properties"])
        for lid, r in _of_type(resources, "AWS::Logs::LogGroup").items()
        if "LogGroupName" in r["Properties"]
    )
    assert log_group["LogGroupName"] == component_log_group_name(component_name)
    filters = _of_type(resources, "AWS::Logs::MetricFilter")
    assert filters and all(f["Properties"]["LogGroupName"] == {"Ref": log_group_id} for f in filters.values())
    # The endpoint waits for the group, so SageMaker never creates it unencrypted.
    endpoint_id, _ = _one(resources, "AWS::SageMaker::Endpoint")
    assert log_group_id in resources[endpoint_id]["DependsOn"]


def test_the_dashboard_graphs_per_copy_metrics_of_the_component(resources, component_name):
    _, dashboard = _one(resources, "AWS::CloudWatch::Dashboard")
    body = json.dumps(dashboard["DashboardBody"])
    for name in (
        "InvocationsPerCopy",
        "ConcurrentRequestsPerCopy",
        "GPUUtilizationNormalized",
        "/aws/sagemaker/InferenceComponents",
        component_name,
        "Copies serving",
    ):
        assert name in body, name
    for name in ("InvocationsPerInstance", "ConcurrentRequestsPerModel", "VariantName"):
        assert name not in body, name


def test_outputs_name_the_component_and_the_example_invokes_it(app, component_name):
    outputs = app.template_json["EndpointStack"]["Outputs"]
    assert outputs["InferenceComponentName"]["Value"] == component_name
    assert f"--inference-component-name {component_name}" in outputs["ExampleInvocation"]["Value"]


# --- checks ----------------------------------------------------------------------------------------------


def test_no_unacknowledged_nag_finding(app):
    assert app.nag_findings == []


def _requests(resources: dict[str, dict]) -> list[tuple[str, str, dict]]:
    """(service, operation, request) for what CloudFormation asks of each API when it creates or updates
    the endpoint's resources, resolved as CloudFormation would (cross-stack outputs as sample ARNs)."""
    values = TemplateValues({"Resources": resources})

    def cross_stack(value: Any) -> Any:
        """Each Fn::GetStackOutput (TrainingStack's execution role, key) as a sample ARN."""
        if isinstance(value, list):
            return [cross_stack(v) for v in value]
        if not isinstance(value, dict):
            return value
        if set(value) == {"Fn::GetStackOutput"}:
            return EXECUTION_ROLE
        return {k: cross_stack(v) for k, v in value.items()}

    def resolve(value: Any) -> Any:
        return values.resolve(cross_stack(value))

    _, config = _one(resources, "AWS::SageMaker::EndpointConfig")
    _, component = _one(resources, "AWS::SageMaker::InferenceComponent")
    component = resolve(component)
    found = [
        ("sagemaker", "CreateEndpointConfig", {"EndpointConfigName": "c", **resolve(config)}),
        (
            "sagemaker",
            "CreateInferenceComponent",
            {k: v for k, v in component.items() if k != "DeploymentConfig"},
        ),
        (
            "sagemaker",
            "UpdateInferenceComponent",
            {k: v for k, v in component.items() if k not in ("EndpointName", "VariantName")},
        ),
    ]
    _, target = _one(resources, "AWS::ApplicationAutoScaling::ScalableTarget")
    found.append(("application-autoscaling", "RegisterScalableTarget", resolve(target)))
    for policy in _of_type(resources, "AWS::ApplicationAutoScaling::ScalingPolicy").values():
        request = resolve({k: v for k, v in policy["Properties"].items() if k != "ScalingTargetId"})
        found.append(
            (
                "application-autoscaling",
                "PutScalingPolicy",
                {
                    **request,
                    **{k: target[k] for k in ("ServiceNamespace", "ResourceId", "ScalableDimension")},
                },
            )
        )
    for alarm in _of_type(resources, "AWS::CloudWatch::Alarm").values():
        request = resolve(alarm["Properties"])
        request["AlarmActions"] = [
            f"arn:aws:autoscaling:us-east-1:123456789012:scalingPolicy:{i}"
            for i, _ in enumerate(request.get("AlarmActions", []))
        ]
        found.append(("cloudwatch", "PutMetricAlarm", request))
    return found


def test_every_request_is_valid_for_botocore(resources):
    session = botocore.session.get_session()
    requests = _requests(resources)
    assert {operation for _, operation, _ in requests} >= {
        "CreateEndpointConfig",
        "CreateInferenceComponent",
        "UpdateInferenceComponent",
        "RegisterScalableTarget",
        "PutScalingPolicy",
        "PutMetricAlarm",
    }
    for service, operation, request in requests:
        shape = session.get_service_model(service).operation_model(operation).input_shape
        report = ParamValidator().validate(request, shape)
        assert not report.has_errors(), f"{operation}: {report.generate_report()}\n{request}"


# --- settings --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, key, allowed",
    [
        ({"endpointMode": "serverless"}, "endpointMode", "one of variant, inference-components"),
        (
            {"endpointMinInstanceCount": 0},
            "endpointMinInstanceCount",
            "0 needs endpointMode=inference-components",
        ),
        (
            {**MODE, "endpointMinCopyCount": 3, "endpointMaxCopyCount": 2},
            "endpointMaxCopyCount",
            "at least endpointMinCopyCount (3)",
        ),
        ({**MODE, "endpointInitialCopyCount": 9}, "endpointInitialCopyCount", "between endpointMinCopyCount"),
        ({**MODE, "endpointCopyMemoryMb": 64}, "endpointCopyMemoryMb", "an integer >= 128"),
        ({**MODE, "endpointCopyAccelerators": -1}, "endpointCopyAccelerators", "an integer >= 0"),
        ({**MODE, "endpointTrafficStepPercent": 75}, "endpointTrafficStepPercent", "between 5 and 50"),
    ],
)
def test_a_wrong_mode_setting_names_the_key_and_what_is_allowed(overrides, key, allowed):
    with pytest.raises(SettingsError, match=f"context key '{key}'") as error:
        Settings.from_context({**cdk_json_context(), **overrides})
    assert allowed in str(error.value)


def test_scale_to_zero_is_one_setting():
    context = cdk_json_context()
    assert not Settings.from_context(context).endpoint.scales_to_zero
    endpoint = Settings.from_context({**context, **MODE}).endpoint
    assert endpoint.inference_components and endpoint.scales_to_zero
