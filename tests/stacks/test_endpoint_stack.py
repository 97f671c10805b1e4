"""EndpointStack: lookup or pinned model version, Model, endpoint config, blue/green endpoint, autoscaling,
alarms, dashboard and outputs, from the session synth (cdk.json defaults) and one synth with a pinned ARN."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Annotations, Match, Template

from jax_llm.contract.serving import DEFAULT_MAX_BATCH
from stacks.constructs.endpoint import VARIANT_NAME, has_instance_storage
from stacks.constructs.model_package_lookup import (DESCRIBE_ACTION, HANDLER_SOURCE, LOOKUP_ACTION,
                                                   RESOURCE_TYPE)
from stacks.settings import Settings, SettingsError

REPO = Path(__file__).resolve().parents[2]
CDK_CONTEXT = json.loads((REPO / "cdk.json").read_text())["context"]
PINNED_ARN = "arn:aws:sagemaker:eu-west-1:123456789012:model-package/jax-llm-gpt/7"
# A GPU type without instance storage, so the endpoint config may carry a volume KMS key.
EBS_ONLY_TYPE = "ml.p3.2xlarge"


@pytest.fixture(scope="module")
def default(synthesized_app) -> Template:
    """EndpointStack from cdk.json's defaults: no modelPackageArn, ml.g5.xlarge, canary, autoscaling."""
    return synthesized_app.templates["EndpointStack"]


@pytest.fixture(scope="module")
def settings(synthesized_app) -> Settings:
    return Settings.from_context(synthesized_app.app)


@pytest.fixture(scope="module")
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


def _one(template: Template, kind: str) -> tuple[str, dict[str, Any]]:
    """The single resource of ``kind``: (logical id, resource)."""
    found = template.find_resources(kind)
    assert len(found) == 1, f"expected one {kind}, found {sorted(found)}"
    return next(iter(found.items()))


def _props(template: Template, kind: str) -> dict[str, Any]:
    return _one(template, kind)[1]["Properties"]


def _lookup_function(template: Template) -> tuple[str, dict[str, Any]]:
    """The lookup's handler function (the stack has the release function too): (logical id, resource)."""
    function_id = _one(template, RESOURCE_TYPE)[1]["Properties"]["ServiceToken"]["Fn::GetAtt"][0]
    return function_id, template.to_json()["Resources"][function_id]


# --- the model version: looked up at deploy time, or pinned -------------------------------------------


def test_model_serves_the_package_the_lookup_finds(default):
    lookup_id, _ = _one(default, RESOURCE_TYPE)
    container = _props(default, "AWS::SageMaker::Model")["PrimaryContainer"]
    assert container == {"ModelPackageName": {"Fn::GetAtt": [lookup_id, "ModelPackageArn"]}}


def test_lookup_asks_for_the_group_and_its_handler_is_the_tested_file_inlined(default, settings):
    _, lookup = _one(default, RESOURCE_TYPE)
    function_id, function = _lookup_function(default)
    assert lookup["Properties"] == {
        "ServiceToken": {"Fn::GetAtt": [function_id, "Arn"]},
        "ModelPackageGroupName": settings.registry.model_package_group_name,
        "LookupToken": "",
        "Requested": {"Ref": "RequestedModelPackageArn"},  # set by the release function on approval
    }
    assert function["Properties"]["Code"] == {"ZipFile": HANDLER_SOURCE.read_text()}
    assert function["Properties"]["Handler"] == "index.handler"
    assert function["Properties"]["Runtime"].startswith("python3.")


def test_lookup_handler_may_read_the_groups_packages_and_write_its_logs_only(default, settings):
    function_id, function = _lookup_function(default)
    role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
    ((policy_id, policy),) = [(k, v) for k, v in default.find_resources("AWS::IAM::ManagedPolicy").items()
                              if v["Properties"]["Roles"] == [{"Ref": role_id}]]
    log_group_id = function["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
    statements = {s["Sid"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"]}
    assert statements["ListModelPackages"] == {
        "Sid": "ListModelPackages",
        "Effect": "Allow",
        "Action": LOOKUP_ACTION,
        "Resource": "*",
    }
    assert statements["HandlerLogs"]["Action"] == ["logs:CreateLogStream", "logs:PutLogEvents"]
    assert statements["HandlerLogs"]["Resource"] == {"Fn::GetAtt": [log_group_id, "Arn"]}
    group = settings.registry.model_package_group_name.lower()
    assert statements["DescribeGroupPackages"]["Action"] == DESCRIBE_ACTION
    described = json.dumps(statements["DescribeGroupPackages"]["Resource"])
    assert described.endswith(f':model-package/{group}/*"]]}}')
    assert set(statements) == {"ListModelPackages", "DescribeGroupPackages", "HandlerLogs"}
    # No managed AWS policies and no inline policies on the handler's role.
    role = default.to_json()["Resources"][role_id]["Properties"]
    assert "ManagedPolicyArns" not in role and "Policies" not in role
    # The lookup runs only once its permissions are attached.
    assert _one(default, RESOURCE_TYPE)[1]["DependsOn"] == [policy_id]


def test_handler_logs_are_encrypted_and_retained(default, settings):
    log_groups = default.find_resources("AWS::Logs::LogGroup").values()
    assert len(log_groups) == 3  # the lookup's, the release function's and the endpoint's
    for log_group in log_groups:
        assert log_group["Properties"]["RetentionInDays"] == settings.storage.log_retention_days
        assert "KmsKeyId" in log_group["Properties"]


def test_with_removal_policy_destroy_the_endpoint_log_group_goes_with_the_stack(pinned):
    template = pinned.templates["EndpointStack"]
    (log_group,) = template.find_resources(
        "AWS::Logs::LogGroup", {"Properties": {"LogGroupName": "/aws/sagemaker/Endpoints/jax-llm-endpoint"}}
    ).values()
    assert (log_group["DeletionPolicy"], log_group["UpdateReplacePolicy"]) == ("Delete", "Delete")


def test_pinned_arn_is_served_without_a_lookup(pinned):
    template = pinned.templates["EndpointStack"]
    assert template.find_resources(RESOURCE_TYPE) == {}
    assert template.find_resources("AWS::Lambda::Function") == {}
    assert _props(template, "AWS::SageMaker::Model")["PrimaryContainer"] == {
        "ModelPackageName": PINNED_ARN,
        "Environment": {"JAX_LLM_MAX_BATCH": "48"},  # endpointDecodeSlots reaches the container
    }
    assert pinned.template_json["EndpointStack"]["Outputs"]["ModelPackageArn"]["Value"] == PINNED_ARN


# --- Model, endpoint config, endpoint -------------------------------------------------------------------


def test_model_is_network_isolated_and_runs_as_the_training_execution_role(synthesized_app, default):
    model = _props(default, "AWS::SageMaker::Model")
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
    (variant,) = _props(default, "AWS::SageMaker::EndpointConfig")["ProductionVariants"]
    model_id, _ = _one(default, "AWS::SageMaker::Model")
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
    capture = _props(default, "AWS::SageMaker::EndpointConfig")["DataCaptureConfig"]
    assert capture["EnableCapture"] is True
    assert capture["InitialSamplingPercentage"] == settings.endpoint.data_capture_percent
    assert capture["CaptureOptions"] == [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}]
    assert capture["CaptureContentTypeHeader"] == {"JsonContentTypes": ["application/json"]}
    prefix, bucket, suffix = capture["DestinationS3Uri"]["Fn::Join"][1]
    assert (prefix, suffix) == ("s3://", "/data-capture")
    assert "Artifacts" in bucket["Fn::GetStackOutput"]["OutputName"]
    assert "EncryptionKey" in capture["KmsKeyId"]["Fn::GetStackOutput"]["OutputName"]


def test_no_volume_key_on_an_instance_type_with_nvme_storage_and_a_synth_note(synthesized_app, default):
    config_id, config = _one(default, "AWS::SageMaker::EndpointConfig")
    assert "KmsKeyId" not in config["Properties"]
    notes = Annotations.from_stack(synthesized_app.stacks["EndpointStack"]).find_info(
        "/EndpointStack/Serving/Config",
        Match.string_like_regexp("ml.g5.xlarge has local NVMe instance storage"),
    )
    assert len(notes) == 1


def test_volume_key_on_an_ebs_only_instance_type(pinned):
    config = _props(pinned.templates["EndpointStack"], "AWS::SageMaker::EndpointConfig")
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
    endpoint = _props(default, "AWS::SageMaker::Endpoint")
    config_id, _ = _one(default, "AWS::SageMaker::EndpointConfig")
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
    endpoint = _props(default, "AWS::SageMaker::Endpoint")
    assert endpoint["RetainAllVariantProperties"] is True
    assert endpoint["ExcludeRetainedVariantProperties"] == [{"VariantPropertyType": "DataCaptureConfig"}]


def test_linear_shifting_and_no_retention_without_autoscaling(pinned):
    template = pinned.templates["EndpointStack"]
    endpoint = _props(template, "AWS::SageMaker::Endpoint")
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


# --- autoscaling -------------------------------------------------------------------------------------


def test_scalable_target_on_the_variant_instance_count(default, settings):
    target_id, target = _one(default, "AWS::ApplicationAutoScaling::ScalableTarget")
    endpoint_id, _ = _one(default, "AWS::SageMaker::Endpoint")
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
    target_id, _ = _one(default, "AWS::ApplicationAutoScaling::ScalableTarget")
    policy = _props(default, "AWS::ApplicationAutoScaling::ScalingPolicy")
    assert policy["PolicyType"] == "TargetTrackingScaling"
    assert policy["ScalingTargetId"] == {"Ref": target_id}
    # cdk.json: endpointDecodeSlots 0 (the image's DEFAULT_MAX_BATCH), endpointTargetConcurrencyPercent 75.
    assert policy["TargetTrackingScalingPolicyConfiguration"] == {
        "PredefinedMetricSpecification": {
            "PredefinedMetricType": "SageMakerVariantConcurrentRequestsPerModelHighResolution"
        },
        "TargetValue": DEFAULT_MAX_BATCH * 3 / 4,
        "ScaleOutCooldown": settings.endpoint.scale_out_cooldown_seconds,
        "ScaleInCooldown": settings.endpoint.scale_in_cooldown_seconds,
    }
    # The image's default slot count is not written into the Model: the image alone decides it.
    assert "Environment" not in _props(default, "AWS::SageMaker::Model")["PrimaryContainer"]


# --- alarms, dashboard, outputs -------------------------------------------------------------------------


def test_rollback_alarms(default, settings):
    name = f"{settings.project.name}-endpoint"
    dimensions = [{"Name": "EndpointName", "Value": name}, {"Name": "VariantName", "Value": VARIANT_NAME}]
    default.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "AlarmName": f"{name}-5xx-errors",
            "Namespace": "AWS/SageMaker",
            "MetricName": "Invocation5XXErrors",
            "Dimensions": dimensions,
            "Statistic": "Sum",
            "Period": 60,
            "Threshold": settings.endpoint.error_alarm_count,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            "EvaluationPeriods": 2,
            "DatapointsToAlarm": 2,
            "TreatMissingData": "notBreaching",
        },
    )
    default.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "AlarmName": f"{name}-model-latency-p90",
            "Namespace": "AWS/SageMaker",
            "MetricName": "ModelLatency",
            "Dimensions": dimensions,
            "ExtendedStatistic": "p90",
            "Period": 60,
            "Threshold": settings.endpoint.latency_alarm_ms * 1000,  # ModelLatency is in microseconds
            "ComparisonOperator": "GreaterThanThreshold",
            "EvaluationPeriods": 3,
            "TreatMissingData": "notBreaching",
        },
    )
    # The server's time to first token, from the endpoint's own namespace (test_serving_metrics.py).
    default.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "AlarmName": f"{name}-time-to-first-token-p90",
            "Namespace": f"JaxLlm/Serving/{name}",
            "MetricName": "TimeToFirstToken",
            "ExtendedStatistic": "p90",
            "Period": 60,
            "Threshold": settings.endpoint.ttft_alarm_ms,  # the metric is in milliseconds
            "ComparisonOperator": "GreaterThanThreshold",
            "EvaluationPeriods": 3,
            "DatapointsToAlarm": 3,
            "TreatMissingData": "notBreaching",
        },
    )


def _dashboard_body(template: Template) -> dict:
    """The dashboard JSON, with each token (alarm ARNs, region) replaced by the string "x"."""
    body = _props(template, "AWS::CloudWatch::Dashboard")["DashboardBody"]
    parts = body["Fn::Join"][1] if isinstance(body, dict) else [body]
    return json.loads("".join(part if isinstance(part, str) else "x" for part in parts))


def test_dashboard_shows_invocations_latency_errors_instances_gpu_and_token_metrics(default, settings):
    widgets = _dashboard_body(default)["widgets"]
    titles = [w["properties"].get("title") for w in widgets]
    assert titles[:12] == [
        "Invocations",
        "Instances",
        "Errors",
        "Model latency",
        "GPU utilization (% x GPUs)",
        "Host utilization",
        "Time to first token",
        "Time per output token",
        "Generated tokens/s per instance",
        "Decode slots and queue",
        "Concurrency (the autoscaling metric)",
        "Queue time (arrival to prefill)",
    ]
    metrics = {tuple(m[:2]) for w in widgets for m in w["properties"].get("metrics", []) if len(m) > 2}
    for namespace, name in [
        ("AWS/SageMaker", "Invocations"),
        ("AWS/SageMaker", "InvocationsPerInstance"),
        ("AWS/SageMaker", "ModelLatency"),
        ("AWS/SageMaker", "Invocation5XXErrors"),
        ("AWS/SageMaker", "Invocation4XXErrors"),
        ("/aws/sagemaker/Endpoints", "GPUUtilization"),
        ("/aws/sagemaker/Endpoints", "GPUMemoryUtilization"),
    ]:
        assert (namespace, name) in metrics
    expressions = [
        m[0]["expression"]
        for w in widgets
        for m in w["properties"].get("metrics", [])
        if isinstance(m[0], dict)
    ]
    assert "invocations / perInstance" in expressions
    assert sum(1 for w in widgets if "alarms" in w["properties"].get("annotations", {})) == 3


def test_token_panels_show_the_server_metrics_percentiles_and_the_slot_and_scaling_lines(default, settings):
    widgets = {w["properties"].get("title"): w["properties"] for w in _dashboard_body(default)["widgets"]}
    namespace = f"JaxLlm/Serving/{settings.project.name}-endpoint"

    def series(title: str) -> list[tuple[str, str]]:
        """(metric name, statistic) of each plain metric of a panel; Average when none is given."""
        return [(m[1], m[-1].get("stat", "Average")) for m in widgets[title]["metrics"] if m[0] == namespace]

    assert series("Time to first token") == [("TimeToFirstToken", p) for p in ("p50", "p90", "p99")]
    assert series("Time per output token") == [("TimePerOutputToken", p) for p in ("p50", "p99")]
    assert series("Queue time (arrival to prefill)") == [("QueueTime", p) for p in ("p50", "p99")]
    assert series("Decode slots and queue") == [
        (name, stat) for name in ("SlotsInUse", "RequestsWaiting") for stat in ("Average", "Maximum")
    ]
    # Tokens/s per instance: generated tokens a second, over the instances serving (SageMaker's ratio).
    metrics = widgets["Generated tokens/s per instance"]["metrics"]
    (expression,) = [m[0]["expression"] for m in metrics if isinstance(m[0], dict)]
    assert expression == "tokens / PERIOD(tokens) / (invocations / perInstance)"
    ids = {m[-1]["id"]: (m[0], m[1], m[-1].get("stat")) for m in metrics if not isinstance(m[0], dict)}
    assert ids == {
        "tokens": (namespace, "GeneratedTokens", "Sum"),
        "invocations": ("AWS/SageMaker", "Invocations", "Sum"),
        "perInstance": ("AWS/SageMaker", "InvocationsPerInstance", "Sum"),
    }
    slots = widgets["Decode slots and queue"]["annotations"]["horizontal"]
    assert [line["value"] for line in slots] == [DEFAULT_MAX_BATCH]
    concurrency = widgets["Concurrency (the autoscaling metric)"]
    assert concurrency["metrics"][0][:2] == ["AWS/SageMaker", "ConcurrentRequestsPerModel"]
    assert [line["value"] for line in concurrency["annotations"]["horizontal"]] == [
        settings.endpoint.target_concurrency
    ]


def test_outputs_name_the_endpoint_and_show_an_invocation(synthesized_app, settings):
    outputs = synthesized_app.template_json["EndpointStack"]["Outputs"]
    endpoint_id, _ = _one(synthesized_app.templates["EndpointStack"], "AWS::SageMaker::Endpoint")
    assert outputs["EndpointName"]["Value"] == {"Fn::GetAtt": [endpoint_id, "EndpointName"]}
    example = outputs["ExampleInvocation"]["Value"]
    assert "python -m ops invoke" in example
    assert f"--endpoint-name {settings.project.name}-endpoint" in example
    body = example.split("--body '")[1].split("'")[0]
    assert json.loads(body) == {"inputs": "Once upon a time", "parameters": {"max_new_tokens": 32}}


# --- checks -------------------------------------------------------------------------------------------


def test_no_unacknowledged_nag_finding_in_either_variant(synthesized_app, pinned):
    findings = [
        f
        for app in (synthesized_app, pinned)
        for f in app.nag_findings
        if f.path.startswith("EndpointStack/")
    ]
    assert findings == []


def test_cfn_lint_passes_the_pinned_variant(pinned):
    """The default variant is linted with every template (test_templates_lint.py); this one differs in
    shape (literal ARN, volume key, linear steps, no capture, no autoscaling)."""
    template = pinned.outdir / pinned.stacks["EndpointStack"].template_file
    result = subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "cfn-lint"),
            "--format",
            "parseable",
            "--ignore-checks",
            "W3005",
            "--",
            str(template),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


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
        (0, 75, DEFAULT_MAX_BATCH * 0.75, {}),
        (48, 75, 36.0, {"JAX_LLM_MAX_BATCH": "48"}),
        (48, 50, 24.0, {"JAX_LLM_MAX_BATCH": "48"}),
        (1, 100, 1.0, {"JAX_LLM_MAX_BATCH": "1"}),
    ],
)
def test_scaling_target_and_container_slots_follow_the_decode_slots(slots, percent, target, environment):
    endpoint = Settings.from_context(
        # 48 slots of the 1.3b's 2048-token KV cache need a 48 GB GPU (synth refuses them on ml.g5.xlarge).
        {**CDK_CONTEXT, "endpointDecodeSlots": slots, "endpointTargetConcurrencyPercent": percent,
         "endpointInstanceType": "ml.g6e.2xlarge"}
    ).endpoint
    assert endpoint.target_concurrency == target
    assert endpoint.container_environment == environment
