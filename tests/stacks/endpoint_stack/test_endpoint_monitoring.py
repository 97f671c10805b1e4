"""EndpointStack's rollback alarms and dashboard."""

from __future__ import annotations

import json

from aws_cdk.assertions import Template

from jax_llm.contract.serving import DEFAULT_DECODE_SLOTS
from stacks.constructs.endpoint import VARIANT_NAME
from tests.stacks.endpoint_stack.templates import resource_properties


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
    body = resource_properties(template, "AWS::CloudWatch::Dashboard")["DashboardBody"]
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
    assert [line["value"] for line in slots] == [DEFAULT_DECODE_SLOTS]
    concurrency = widgets["Concurrency (the autoscaling metric)"]
    assert concurrency["metrics"][0][:2] == ["AWS/SageMaker", "ConcurrentRequestsPerModel"]
    assert [line["value"] for line in concurrency["annotations"]["horizontal"]] == [
        settings.endpoint.target_concurrency
    ]
