"""Target-tracking autoscaling of the endpoint variant's instance count on concurrent requests per instance.

An LLM instance saturates on requests in flight, not on requests per minute: a request holds one of its
decode slots for as long as it generates, seconds or a minute. SageMaker's ConcurrentRequestsPerModel counts
the requests a container holds (queued ones included, streams until their last token) every 10 s, so the
policy scales out faster than on the per-minute metrics (scale-in is as slow as with them). Its target is a
share of the decode slots (EndpointSettings.target_concurrency): below 100% so that the fleet grows while
the instances still answer without queueing, since a new GPU instance takes minutes (download, load, compile).

SageMaker refuses an UpdateEndpoint that changes the instance type of a variant registered as a scalable
target, and CloudFormation cannot deregister it before updating the endpoint in the same deploy. Changing
endpointInstanceType therefore takes two deploys: `-c endpointAutoscaling=false` (removes this construct),
then the new instance type with autoscaling back on.
"""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_iam as iam
from constructs import Construct

from stacks.settings import EndpointSettings

SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
SERVICE_LINKED_ROLE = (
    "aws-service-role/sagemaker.application-autoscaling.amazonaws.com/"
    "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
)


class EndpointAutoscaling(Construct):
    """A scalable target on the variant's DesiredInstanceCount, tracking concurrent requests per instance."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: EndpointSettings,
        endpoint_name: str,
        variant_name: str,
        endpoint: Construct,
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
        self.target = appscaling.ScalableTarget(
            self,
            "Target",
            role=service_linked_role,
            service_namespace=appscaling.ServiceNamespace.SAGEMAKER,
            resource_id=f"endpoint/{endpoint_name}/variant/{variant_name}",
            scalable_dimension=SCALABLE_DIMENSION,
            min_capacity=settings.min_instance_count,
            max_capacity=settings.max_instance_count,
        )
        # The variant must exist before it can be registered.
        self.target.node.add_dependency(endpoint)
        self.policy = self.target.scale_to_track_metric(
            "ConcurrentRequestsPerModel",
            predefined_metric=(
                appscaling.PredefinedMetric.SAGEMAKER_VARIANT_CONCURRENT_REQUESTS_PER_MODEL_HIGH_RESOLUTION
            ),
            target_value=settings.target_concurrency,
            # A new GPU instance needs minutes (download, load, XLA compile) before it takes traffic: scale
            # out again only after that (the 10 s metric would otherwise add instances for load that the
            # starting ones will take), and scale in slowly so a short lull does not drop warm capacity.
            scale_out_cooldown=Duration.seconds(settings.scale_out_cooldown_seconds),
            scale_in_cooldown=Duration.seconds(settings.scale_in_cooldown_seconds),
        )
