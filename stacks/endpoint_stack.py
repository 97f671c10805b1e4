"""EndpointStack: a registered model version behind an autoscaling, blue/green-updated SageMaker endpoint."""

from __future__ import annotations

import json

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks import names
from stacks.constructs.autoscaling import EndpointAutoscaling
from stacks.constructs.endpoint import VARIANT_NAME, ModelEndpoint
from stacks.constructs.endpoint_monitoring import EndpointMonitoring, MetricScope
from stacks.constructs.inference_component import inference_component_name
from stacks.constructs.model_package_lookup import ModelPackageLookup
from stacks.constructs.release_automation import ModelRelease
from stacks.constructs.release_handler.index import SERVING_OUTPUT
from stacks.constructs.serving_metrics import ServingMetrics, component_log_group_name
from stacks.settings import Settings

EXAMPLE_PROMPT = "Once upon a time"


class EndpointStack(Stack):
    """Serves ``-c modelPackageArn=...``, or the group's newest Approved version, found at deploy time, on a
    production variant or (``endpointMode=inference-components``) as an inference component."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        key: kms.IKey,
        artifacts_bucket: s3.IBucket,
        execution_role: iam.IRole,
        execution_role_policy: Construct,
        model_package_group_name: str,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        endpoint_settings = settings.endpoint
        # A fixed name: the rollback alarms must name the endpoint without referring to it (see monitoring).
        endpoint_name = f"{settings.project.name}-endpoint"
        components = endpoint_settings.inference_components
        component_name = inference_component_name(endpoint_name) if components else None

        if endpoint_settings.model_package_arn:
            model_package_arn = endpoint_settings.model_package_arn
        else:  # approving a version rolls it out (a pinned ARN is not followed)
            release = ModelRelease(
                self, "Release", group_name=model_package_group_name, key=key, storage=settings.storage
            )
            model_package_arn = ModelPackageLookup(
                self,
                "NewestApprovedModel",
                group_name=model_package_group_name,
                endpoint=endpoint_settings,
                requested=release.requested,
                key=key,
                storage=settings.storage,
            ).model_package_arn

        serving_metrics = ServingMetrics(
            self,
            "ServingMetrics",
            endpoint_name=endpoint_name,
            key=key,
            storage=settings.storage,
            retain=settings.project.removal_policy == "retain",
            log_group_name=component_log_group_name(component_name) if component_name else None,
        )
        monitoring = EndpointMonitoring(
            self,
            "Monitoring",
            settings=endpoint_settings,
            endpoint_name=endpoint_name,
            scope_of_metrics=MetricScope.of_component(component_name)
            if component_name
            else MetricScope.of_variant(endpoint_name, VARIANT_NAME),
            serving_metrics=serving_metrics,
        )
        serving = ModelEndpoint(
            self,
            "Serving",
            settings=endpoint_settings,
            endpoint_name=endpoint_name,
            model_package_arn=model_package_arn,
            execution_role=execution_role,
            execution_role_policy=execution_role_policy,
            key=key,
            capture_bucket=artifacts_bucket,
            rollback_alarms=monitoring.rollback_alarms,
        )
        # The log group must exist before the first container logs (SageMaker would create it).
        serving.endpoint.node.add_dependency(serving_metrics.log_group)
        if endpoint_settings.autoscaling:
            EndpointAutoscaling(
                self,
                "Autoscaling",
                settings=endpoint_settings,
                endpoint_name=endpoint_name,
                variant_name=VARIANT_NAME,
                endpoint=serving.component or serving.endpoint,
                component_name=component_name,
            )

        self.endpoint_name = endpoint_name
        self.model_package_arn = model_package_arn
        component_description = "The inference component serving the model" + (
            " (its copies scale to zero when idle)" if endpoint_settings.scales_to_zero else ""
        )
        body = json.dumps({"inputs": EXAMPLE_PROMPT, "parameters": {"max_new_tokens": 32}})
        # An endpoint of inference components takes requests for one of them.
        target = f"--endpoint-name {endpoint_name}" + (
            f" --inference-component-name {component_name}" if component_name else ""
        )
        for output_id, value, description in [
            (
                names.ENDPOINT_OUTPUT,
                serving.endpoint.attr_endpoint_name,
                "SageMaker endpoint serving the model",
            ),
            (SERVING_OUTPUT, model_package_arn, "The model package version the endpoint serves"),
            (
                names.EXAMPLE_INVOCATION_OUTPUT,
                f"python -m ops invoke '{EXAMPLE_PROMPT}' --max-new-tokens 32   # or: aws sagemaker-runtime "
                f"invoke-endpoint {target} --content-type application/json "
                f"--cli-binary-format raw-in-base64-out --body '{body}' /dev/stdout",
                "Invoke the endpoint with TGI's request schema",
            ),
            (
                names.DASHBOARD_OUTPUT,
                monitoring.dashboard.dashboard_name,
                "CloudWatch dashboard of the endpoint",
            ),
            *([(names.COMPONENT_OUTPUT, component_name, component_description)] if component_name else []),
        ]:
            CfnOutput(self, output_id, value=value, description=description)
