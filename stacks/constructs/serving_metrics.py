"""The endpoint's log group, and the metric filters that make CloudWatch metrics of the server's metric lines.

SageMaker ships the container's stdout to ``/aws/sagemaker/Endpoints/<endpoint name>`` (in
inference-components mode: ``/aws/sagemaker/InferenceComponents/<component name>``, one stream per copy); the
server writes one
JSON line per finished request and one per engine report (``jax_llm.contract.serving``). A metric filter per
field of that table publishes it, so no agent runs in the container and the image needs no AWS permission.

Why metric filters and not Embedded Metric Format: an EMF line must carry its namespace and dimensions, and
the container does not know the endpoint it serves, so two endpoints' lines would land in one metric. A
filter belongs to one log group, which the endpoint names; its namespace (``<NAMESPACE>/<endpoint name>``)
keeps two endpoints or stacks apart. Filter dimensions can only come from fields of the line, and no field
names the endpoint or instance, so the metrics have none: every instance of the endpoint feeds one metric.

The log group is created here, before the endpoint (SageMaker would otherwise create it on first log,
unencrypted and kept forever). A group left by an earlier endpoint of the same name makes the deploy stop
with "already exists": ``cdk deploy --import-existing-resources`` adopts it (docs/stacks.md, token metrics).
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from jax_llm.contract.serving import LOG_METRICS, NAMESPACE, LogMetric
from stacks.constructs.execution_role import SAGEMAKER_LOG_GROUP_PREFIX
from stacks.settings import StorageSettings

ENDPOINT_LOG_GROUP_PREFIX = f"{SAGEMAKER_LOG_GROUP_PREFIX}Endpoints/"
COMPONENT_LOG_GROUP_PREFIX = f"{SAGEMAKER_LOG_GROUP_PREFIX}InferenceComponents/"


def endpoint_log_group_name(endpoint_name: str) -> str:
    """The log group SageMaker writes an endpoint's container output to."""
    return f"{ENDPOINT_LOG_GROUP_PREFIX}{endpoint_name}"


def component_log_group_name(component_name: str) -> str:
    """The log group SageMaker writes an inference component's container output to."""
    return f"{COMPONENT_LOG_GROUP_PREFIX}{component_name}"


def metric_namespace(endpoint_name: str) -> str:
    """The CloudWatch namespace of one endpoint's serving metrics."""
    return f"{NAMESPACE}/{endpoint_name}"


class ServingMetrics(Construct):
    """The endpoint's encrypted log group and one metric filter per field of the contract's metric lines
    (``log_group_name``: the group the container logs to, by default the endpoint's)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        endpoint_name: str,
        key: kms.IKey,
        storage: StorageSettings,
        retain: bool,
        log_group_name: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        # Kept (``retain``) as RetainExceptOnCreate: a failed first deploy leaves no group behind, and a kept
        # group can be adopted by `--import-existing-resources`, which needs Retain or RetainExceptOnCreate.
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            log_group_name=log_group_name or endpoint_log_group_name(endpoint_name),
            encryption_key=key,
            removal_policy=RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE if retain else RemovalPolicy.DESTROY,
        )
        # Any value CloudWatch accepts (the L2 property takes only its enum).
        self.log_group.node.default_child.retention_in_days = storage.log_retention_days
        self.namespace = metric_namespace(endpoint_name)
        self.metrics: dict[str, LogMetric] = {m.field: m for m in LOG_METRICS}
        for metric in LOG_METRICS:
            logs.CfnMetricFilter(
                self,
                metric.metric_name,
                log_group_name=self.log_group.log_group_name,
                filter_pattern=metric.filter_pattern,
                metric_transformations=[
                    logs.CfnMetricFilter.MetricTransformationProperty(
                        metric_namespace=self.namespace,
                        metric_name=metric.metric_name,
                        metric_value=f"$.{metric.field}",
                        unit=metric.unit,
                    )
                ],
            )

    def metric(self, field: str, statistic: str, label: str | None = None) -> cloudwatch.Metric:
        """The per-minute CloudWatch metric made of ``field`` of the server's metric lines."""
        return cloudwatch.Metric(
            namespace=self.namespace,
            metric_name=self.metrics[field].metric_name,
            statistic=statistic,
            period=Duration.minutes(1),
            label=label,
        )
