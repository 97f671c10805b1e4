"""Alarms that roll a blue/green update back, and the endpoint's CloudWatch dashboard.

Beside SageMaker's own metrics, the server's token metrics (``ServingMetrics``: time to first token, time
per output token, tokens, slots and queue) fill two rows of the dashboard and the third rollback alarm.

In inference-components mode SageMaker publishes the invocation metrics per component (dimension
``InferenceComponentName``), counts per copy instead of per instance (``InvocationsPerCopy``,
``ConcurrentRequestsPerCopy``) and the utilization of a component's copies in its own namespace, normalized to
the resources the copies reserve (``/aws/sagemaker/InferenceComponents``, ``GPUUtilizationNormalized``, ...):
``MetricScope`` holds those names for each mode, and the same alarms and dashboard are built from it.

The alarms name the endpoint and variant (or component) as fixed strings (not references to the endpoint),
because the
endpoint refers to the alarms in its AutoRollbackConfiguration: references both ways would be a cycle.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from constructs import Construct

from stacks.constructs.serving_metrics import ServingMetrics
from stacks.nag import acknowledge
from stacks.settings import EndpointSettings

INVOCATION_NAMESPACE = "AWS/SageMaker"  # Invocations, latencies, errors (per endpoint and variant)
INSTANCE_NAMESPACE = "/aws/sagemaker/Endpoints"  # CPU, memory, disk, GPU utilization of the instances
COMPONENT_NAMESPACE = "/aws/sagemaker/InferenceComponents"  # the same, per component, normalized
MINUTE = Duration.minutes(1)


@dataclass(frozen=True)
class MetricScope:
    """Where one mode's SageMaker metrics live: their dimensions, the names of the per-unit counts (a unit is
    an instance of the variant or a copy of the component) and the utilization metrics."""

    dimensions: dict[str, str]
    unit: str  # "instance" or "copy", for labels
    units: str  # "instances" or "copies"
    per_unit: str  # invocations per unit and minute
    concurrency: str  # requests in flight per unit (the autoscaling metric)
    utilization_namespace: str
    gpu: tuple[str, ...]
    host: tuple[str, ...]
    errors: tuple[str, ...] = ("Invocation4XXErrors", "Invocation5XXErrors", "InvocationModelErrors")

    @classmethod
    def of_variant(cls, endpoint_name: str, variant_name: str) -> MetricScope:
        """The variant's metrics (variant mode)."""
        return cls(
            {"EndpointName": endpoint_name, "VariantName": variant_name},
            "instance",
            "instances",
            "InvocationsPerInstance",
            "ConcurrentRequestsPerModel",
            INSTANCE_NAMESPACE,
            ("GPUUtilization", "GPUMemoryUtilization"),
            ("CPUUtilization", "MemoryUtilization", "DiskUtilization"),
        )

    @classmethod
    def of_component(cls, component_name: str) -> MetricScope:
        """The inference component's metrics (inference-components mode)."""
        return cls(
            {"InferenceComponentName": component_name},
            "copy",
            "copies",
            "InvocationsPerCopy",
            "ConcurrentRequestsPerCopy",
            COMPONENT_NAMESPACE,
            ("GPUUtilizationNormalized", "GPUMemoryUtilizationNormalized"),
            ("CPUUtilizationNormalized", "MemoryUtilizationNormalized"),
            # Requests that found no copy (scaled to zero, or all copies starting) fail with this.
            (*cls.errors, "NoCapacityInvocationFailures"),
        )


class EndpointMonitoring(Construct):
    """5xx, p90 model-latency and p90 time-to-first-token alarms (``rollback_alarms``) and a dashboard."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: EndpointSettings,
        endpoint_name: str,
        scope_of_metrics: MetricScope,
        serving_metrics: ServingMetrics,
    ) -> None:
        super().__init__(scope, construct_id)
        self._scope = scope_of_metrics
        self._dimensions = scope_of_metrics.dimensions
        self._serving = serving_metrics
        errors_5xx = self._metric("Invocation5XXErrors", "Sum")
        latency_p90 = self._metric("ModelLatency", "p90")  # microseconds
        self.error_alarm = cloudwatch.Alarm(
            self,
            "Errors5xx",
            alarm_name=f"{endpoint_name}-5xx-errors",
            alarm_description=f"{settings.error_alarm_count}+ 5xx responses a minute, 2 minutes in a row; "
            "rolls back an update of the served version",
            metric=errors_5xx,
            threshold=settings.error_alarm_count,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=2,
            datapoints_to_alarm=2,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,  # no traffic is not an error
        )
        self.latency_alarm = cloudwatch.Alarm(
            self,
            "LatencyP90",
            alarm_name=f"{endpoint_name}-model-latency-p90",
            alarm_description=f"p90 model latency above {settings.latency_alarm_ms} ms for 3 of 3 minutes; "
            "rolls back an update of the served version",
            metric=latency_p90,
            threshold=settings.latency_alarm_ms * 1000,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=3,
            datapoints_to_alarm=3,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        # Time to first token includes the wait for a slot: a version that prefills slowly, or one whose
        # slots stay full, shows here first; whole-request latency also grows with the tokens asked for.
        self.ttft_alarm = cloudwatch.Alarm(
            self,
            "TimeToFirstTokenP90",
            alarm_name=f"{endpoint_name}-time-to-first-token-p90",
            alarm_description=f"p90 time to first token above {settings.ttft_alarm_ms} ms for 3 of 3 "
            "minutes; rolls back an update of the served version",
            metric=serving_metrics.metric("ttft_ms", "p90"),
            threshold=settings.ttft_alarm_ms,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=3,
            datapoints_to_alarm=3,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.rollback_alarms = [self.error_alarm, self.latency_alarm, self.ttft_alarm]
        for alarm in self.rollback_alarms:
            acknowledge(
                alarm,
                "NIST.800.53.R5-CloudWatchAlarmAction",
                "SageMaker deployment guardrails watch this alarm's state (AutoRollbackConfiguration) "
                "and roll the update back; the dashboard shows it; no notification target exists here.",
            )
        self.dashboard = self._dashboard(endpoint_name, settings)

    def _metric(
        self, name: str, statistic: str, namespace: str = INVOCATION_NAMESPACE, label: str | None = None
    ) -> cloudwatch.Metric:
        """One per-minute metric of the variant."""
        return cloudwatch.Metric(
            namespace=namespace,
            metric_name=name,
            dimensions_map=self._dimensions,
            statistic=statistic,
            period=MINUTE,
            label=label,
        )

    def _dashboard(self, endpoint_name: str, settings: EndpointSettings) -> cloudwatch.Dashboard:
        """Invocations, instances, latency, errors, GPU and host utilization, token metrics, the alarms."""
        invocations = self._metric("Invocations", "Sum")
        per_instance = self._metric(self._scope.per_unit, "Sum")
        # No metric counts the instances (copies); InvocationsPerInstance (PerCopy) is Invocations / count
        # per minute, so the ratio is the count whenever there is traffic (and empty when idle).
        instances = cloudwatch.MathExpression(
            expression="invocations / perInstance",
            label=f"{self._scope.units.capitalize()} serving",
            using_metrics={"invocations": invocations, "perInstance": per_instance},
            period=MINUTE,
        )
        latency = [
            self._metric("ModelLatency", p, label=f"ModelLatency {p} (µs)") for p in ("p50", "p90", "p99")
        ]
        overhead = self._metric("OverheadLatency", "p90", label="OverheadLatency p90 (µs)")
        errors = [self._metric(name, "Sum") for name in self._scope.errors]
        namespace = self._scope.utilization_namespace
        gpu = [self._metric(name, "Average", namespace) for name in self._scope.gpu]
        host = [self._metric(name, "Average", namespace) for name in self._scope.host]

        dashboard = cloudwatch.Dashboard(
            self, "Dashboard", dashboard_name=endpoint_name, default_interval=Duration.hours(3)
        )
        dashboard.add_widgets(
            _graph("Invocations", [invocations, per_instance], "count / min"),
            _graph(self._scope.units.capitalize(), [instances], self._scope.units),
            _graph("Errors", errors, "count / min"),
        )
        dashboard.add_widgets(
            _graph("Model latency", [*latency, overhead], "µs"),
            _graph("GPU utilization (% x GPUs)", gpu, "%"),
            _graph("Host utilization", host, "%"),
        )
        token_widgets = self._token_widgets(invocations, per_instance, settings)
        dashboard.add_widgets(*token_widgets[:3])
        dashboard.add_widgets(*token_widgets[3:])
        dashboard.add_widgets(
            *[
                cloudwatch.AlarmWidget(title=a.alarm_name, alarm=a, width=8, height=4)
                for a in self.rollback_alarms
            ]
        )
        return dashboard

    def _token_widgets(
        self, invocations: cloudwatch.Metric, per_instance: cloudwatch.Metric, settings: EndpointSettings
    ) -> list[cloudwatch.GraphWidget]:
        """Time to first token, time per output token, tokens/s per instance; slots, queue, concurrency."""
        serving = self._serving
        percentiles = ("p50", "p90", "p99")
        ttft = [serving.metric("ttft_ms", p, f"time to first token {p}") for p in percentiles]
        tpot = [serving.metric("tpot_ms", p, f"time per output token {p}") for p in ("p50", "p99")]
        unit = self._scope.unit
        # Tokens generated a second over the minute, per instance (copy) serving (the count as above).
        tokens_per_s = cloudwatch.MathExpression(
            expression="tokens / PERIOD(tokens) / (invocations / perInstance)",
            label=f"generated tokens/s per {unit}",
            using_metrics={
                "tokens": serving.metric("generated_tokens", "Sum"),
                "invocations": invocations,
                "perInstance": per_instance,
            },
            period=MINUTE,
        )
        # Each instance reports its engine every ENGINE_REPORT_S into the same metric: the average is the
        # typical instance's load, the maximum the busiest instance's.
        engine = [
            serving.metric(field, statistic, f"{field.replace('_', ' ')} ({statistic.lower()} per instance)")
            for field in ("slots_in_use", "requests_waiting")
            for statistic in ("Average", "Maximum")
        ]
        decode_slots = settings.effective_decode_slots
        slots = cloudwatch.HorizontalAnnotation(value=decode_slots, label=f"{decode_slots} decode slots")
        concurrency = self._metric(
            self._scope.concurrency, "Average", label=f"concurrent requests per {unit}"
        )
        target = cloudwatch.HorizontalAnnotation(
            value=settings.target_concurrency, label=f"autoscaling target {settings.target_concurrency:g}"
        )
        queue = [serving.metric("queue_ms", p, f"queue time {p}") for p in ("p50", "p99")]
        return [
            _graph("Time to first token", ttft, "ms"),
            _graph("Time per output token", tpot, "ms"),
            _graph(f"Generated tokens/s per {unit}", [tokens_per_s], "tokens/s"),
            _graph("Decode slots and queue", engine, "requests", [slots]),
            _graph("Concurrency (the autoscaling metric)", [concurrency], "requests", [target]),
            _graph("Queue time (arrival to prefill)", queue, "ms"),
        ]


def _graph(title: str, metrics: list, unit: str = "", lines: list | None = None) -> cloudwatch.GraphWidget:
    """A third of a dashboard row: ``metrics`` on the left axis labelled ``unit``, horizontal ``lines``."""
    return cloudwatch.GraphWidget(
        title=title,
        left=metrics,
        width=8,
        height=6,
        left_y_axis=cloudwatch.YAxisProps(label=unit, show_units=False),
        left_annotations=lines,
    )
