"""Target-tracking autoscaling of the endpoint variant's instance count on concurrent requests per instance.

An LLM instance saturates on requests in flight, not on requests per minute: a request holds one of its
decode slots for as long as it generates, seconds or a minute. SageMaker's ConcurrentRequestsPerModel counts
the requests a container holds (queued ones included, streams until their last token) every 10 s, so the
policy scales out faster than on the per-minute metrics (scale-in is as slow as with them). Its target is a
share of the decode slots (EndpointSettings.target_concurrency): below 100% so that the fleet grows while
the instances still answer without queueing, since a new GPU instance takes minutes (download, load, compile).

In inference-components mode the scalable target is the component's copy count instead, tracked on
concurrent requests per copy; SageMaker's managed instance scaling adds and removes the instances the copies
need. With a minimum of 0 copies, target tracking scales in to zero but never out of it (no copy, no
metric): the documented way back is a step-scaling policy that adds a copy when the alarm on
NoCapacityInvocationFailures fires, which is the first request that found no copy (SageMaker Developer
Guide, "Scale an endpoint to zero instances"; "Auto scaling policy overview": "you must use step scaling if
you want to enable an endpoint to scale out from zero active instances").

SageMaker refuses an UpdateEndpoint that changes the instance type of a variant registered as a scalable
target, and CloudFormation cannot deregister it before updating the endpoint in the same deploy. Changing
endpointInstanceType therefore takes two deploys: `-c endpointAutoscaling=false` (removes this construct),
then the new instance type with autoscaling back on.
"""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_iam as iam
from constructs import Construct

from stacks.settings import EndpointSettings

SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
COPY_DIMENSION = "sagemaker:inference-component:DesiredCopyCount"
NO_CAPACITY_METRIC = "NoCapacityInvocationFailures"  # AWS/SageMaker, per InferenceComponentName
SERVICE_LINKED_ROLE = (
    "aws-service-role/sagemaker.application-autoscaling.amazonaws.com/"
    "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
)


class EndpointAutoscaling(Construct):
    """A scalable target on the variant's DesiredInstanceCount tracking concurrent requests per instance, or,
    given ``component_name``, on the component's DesiredCopyCount tracking concurrent requests per copy (and,
    with a minimum of 0 copies, the step policy and alarm that scale out from zero)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: EndpointSettings,
        endpoint_name: str,
        variant_name: str,
        endpoint: Construct,
        component_name: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        # Application Auto Scaling scales SageMaker variants with its service-linked role (created on first
        # use); naming it keeps the construct from creating an unused role of its own.
        service_linked_role = iam.Role.from_role_arn(
            self,
            "ServiceLinkedRole",
            Stack.of(self).format_arn(
                service="iam", region="", resource="role", resource_name=SERVICE_LINKED_ROLE
            ),
        )
        copies = component_name is not None
        self.target = appscaling.ScalableTarget(
            self,
            "Target",
            role=service_linked_role,
            service_namespace=appscaling.ServiceNamespace.SAGEMAKER,
            resource_id=f"inference-component/{component_name}"
            if copies
            else f"endpoint/{endpoint_name}/variant/{variant_name}",
            scalable_dimension=COPY_DIMENSION if copies else SCALABLE_DIMENSION,
            min_capacity=settings.min_copy_count if copies else settings.min_instance_count,
            max_capacity=settings.max_copy_count if copies else settings.max_instance_count,
        )
        # The variant (or component) must exist before it can be registered.
        self.target.node.add_dependency(endpoint)
        metric = appscaling.PredefinedMetric
        self.policy = self.target.scale_to_track_metric(
            "ConcurrentRequestsPerCopy" if copies else "ConcurrentRequestsPerModel",
            predefined_metric=(
                metric.SAGEMAKER_INFERENCE_COMPONENT_CONCURRENT_REQUESTS_PER_COPY_HIGH_RESOLUTION
                if copies
                else metric.SAGEMAKER_VARIANT_CONCURRENT_REQUESTS_PER_MODEL_HIGH_RESOLUTION
            ),
            target_value=settings.target_concurrency,
            # A new GPU instance needs minutes (download, load, XLA compile) before it takes traffic: scale
            # out again only after that (the 10 s metric would otherwise add instances for load that the
            # starting ones will take), and scale in slowly so a short lull does not drop warm capacity.
            scale_out_cooldown=Duration.seconds(settings.scale_out_cooldown_seconds),
            scale_in_cooldown=Duration.seconds(settings.scale_in_cooldown_seconds),
        )
        self.from_zero_alarm: cloudwatch.Alarm | None = None
        if copies and settings.min_copy_count == 0:
            self.from_zero_alarm = self._scale_out_from_zero(component_name, settings)

    def _scale_out_from_zero(self, component_name: str, settings: EndpointSettings) -> cloudwatch.Alarm:
        """One copy more whenever a request found none: the alarm on NoCapacityInvocationFailures."""
        step = appscaling.StepScalingAction(
            self,
            "ScaleOutFromZero",
            scaling_target=self.target,
            adjustment_type=appscaling.AdjustmentType.CHANGE_IN_CAPACITY,
            metric_aggregation_type=appscaling.MetricAggregationType.MAXIMUM,
            # The first copy takes minutes to start; requests failing meanwhile must not add more copies.
            cooldown=Duration.seconds(settings.scale_out_cooldown_seconds),
        )
        step.add_adjustment(adjustment=1, lower_bound=0)
        alarm = cloudwatch.Alarm(
            self,
            "NoCapacity",
            alarm_name=f"{component_name}-no-capacity",
            alarm_description="A request found no copy of the model (scaled to zero): start one",
            metric=cloudwatch.Metric(
                namespace="AWS/SageMaker",
                metric_name=NO_CAPACITY_METRIC,
                dimensions_map={"InferenceComponentName": component_name},
                statistic="Maximum",
                period=Duration.minutes(1),
            ),
            threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,  # no request, nothing to start
        )
        alarm.add_alarm_action(cloudwatch_actions.ApplicationScalingAction(step))
        return alarm
