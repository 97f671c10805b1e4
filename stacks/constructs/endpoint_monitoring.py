"""Alarms that roll a blue/green update back, and the endpoint's CloudWatch dashboard.

The alarms name the endpoint and variant as fixed strings (not references to the endpoint), because the
endpoint refers to the alarms in its AutoRollbackConfiguration: references both ways would be a cycle.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from constructs import Construct

from stacks.nag import acknowledge
from stacks.settings import EndpointSettings

INVOCATION_NAMESPACE = "AWS/SageMaker"  # Invocations, latencies, errors (per endpoint and variant)
INSTANCE_NAMESPACE = "/aws/sagemaker/Endpoints"  # CPU, memory, disk, GPU utilization of the instances
MINUTE = Duration.minutes(1)


class EndpointMonitoring(Construct):
    """5xx and p90 model-latency alarms (``rollback_alarms``) and a dashboard for one endpoint variant."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: EndpointSettings,
        endpoint_name: str,
        variant_name: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self._dimensions = {"EndpointName": endpoint_name, "VariantName": variant_name}
        errors_5xx = self._metric("Invocation5XXErrors", "Sum")
        latency_p90 = self._metric("ModelLatency", "p90")  # microseconds
        self.error_alarm = cloudwatch.Alarm(
            self,
            "Errors5xx",
            alarm_name=f"{endpoint_name}-5xx-errors",
            alarm_description=f"{settings.error_alarm_count}+ 5xx responses a minute, 2 minutes in a row; "
            "rolls back a blue/green update",
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
            "rolls back a blue/green update",
            metric=latency_p90,
            threshold=settings.latency_alarm_ms * 1000,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=3,
            datapoints_to_alarm=3,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.rollback_alarms = [self.error_alarm, self.latency_alarm]
        for alarm in self.rollback_alarms:
            acknowledge(
                alarm,
                "NIST.800.53.R5-CloudWatchAlarmAction",
                "SageMaker deployment guardrails watch this alarm's state (AutoRollbackConfiguration) "
                "and roll the update back; the dashboard shows it; no notification target exists here.",
            )
        self.dashboard = self._dashboard(endpoint_name)

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

    def _dashboard(self, endpoint_name: str) -> cloudwatch.Dashboard:
        """Invocations, instances, latency, errors, GPU and host utilization, and the rollback alarms."""
        invocations = self._metric("Invocations", "Sum")
        per_instance = self._metric("InvocationsPerInstance", "Sum")
        # No metric counts the instances; InvocationsPerInstance is Invocations / InstanceCount per minute,
        # so the ratio is the count whenever there is traffic (and empty when idle).
        instances = cloudwatch.MathExpression(
            expression="invocations / perInstance",
            label="Instances serving",
            using_metrics={"invocations": invocations, "perInstance": per_instance},
            period=MINUTE,
        )
        latency = [
            self._metric("ModelLatency", p, label=f"ModelLatency {p} (µs)") for p in ("p50", "p90", "p99")
        ]
        overhead = self._metric("OverheadLatency", "p90", label="OverheadLatency p90 (µs)")
        errors = [
            self._metric(name, "Sum")
            for name in ("Invocation4XXErrors", "Invocation5XXErrors", "InvocationModelErrors")
        ]
        gpu = [
            self._metric(name, "Average", INSTANCE_NAMESPACE)
            for name in ("GPUUtilization", "GPUMemoryUtilization")
        ]
        host = [
            self._metric(name, "Average", INSTANCE_NAMESPACE)
            for name in ("CPUUtilization", "MemoryUtilization", "DiskUtilization")
        ]

        def graph(title: str, metrics: list, unit: str = "") -> cloudwatch.GraphWidget:
            return cloudwatch.GraphWidget(
                title=title,
                left=metrics,
                width=8,
                height=6,
                left_y_axis=cloudwatch.YAxisProps(label=unit, show_units=False),
            )

        dashboard = cloudwatch.Dashboard(
            self, "Dashboard", dashboard_name=endpoint_name, default_interval=Duration.hours(3)
        )
        dashboard.add_widgets(
            graph("Invocations", [invocations, per_instance], "count / min"),
            graph("Instances", [instances], "instances"),
            graph("Errors", errors, "count / min"),
        )
        dashboard.add_widgets(
            graph("Model latency", [*latency, overhead], "µs"),
            graph("GPU utilization (% x GPUs)", gpu, "%"),
            graph("Host utilization", host, "%"),
        )
        dashboard.add_widgets(
            *[
                cloudwatch.AlarmWidget(title=a.alarm_name, alarm=a, width=12, height=4)
                for a in self.rollback_alarms
            ]
        )
        return dashboard
