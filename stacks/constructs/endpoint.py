"""The SageMaker Model, endpoint config and endpoint that serve one model package version.

Variant mode (the default): the Model sits on the endpoint config's production variant. Updates are
blue/green: a new model package (or any config change) replaces the Model and the endpoint config, and
CloudFormation's UpdateEndpoint shifts traffic to the new fleet in canary or linear steps, rolling back on
its own when a rollback alarm fires during a bake period.

Inference-components mode: the variant holds only instances, scaled by SageMaker (managed instance scaling,
down to zero), and the Model is served by an inference component (``inference_component.py``) whose updates
are rolling. The endpoint config then no longer changes with the model version.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from aws_cdk import Annotations
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from stacks.constructs.inference_component import ModelComponent
from stacks.nag import acknowledge
from stacks.settings import EndpointSettings

# Blue/green updates need the new config to keep the variant's name; alarms and autoscaling name it too.
VARIANT_NAME = "primary"
DATA_CAPTURE_PREFIX = "data-capture"

# Instance families whose instances carry local NVMe instance storage. SageMaker encrypts it in hardware
# and CreateEndpointConfig rejects a KmsKeyId for them ("You can't request a KmsKeyId when using an
# instance type with local storage"). Rule: the families listed here, plus any family whose attribute
# letters after the generation include "d" (c5d, m5d, r5d, m6id, g4dn, g4ad, p3dn, p4d, p4de).
_NVME_FAMILIES = frozenset(
    {"g5", "g6", "g6e", "gr6", "p5", "p5e", "p5en", "p6-b200", "trn1", "trn1n", "trn2"}
)
_FAMILY = re.compile(r"^(?P<kind>[a-z]+)(?P<generation>\d+)(?P<attributes>[a-z-]*)$")


def has_instance_storage(instance_type: str) -> bool:
    """True when ``instance_type`` (ml.<family>.<size>) has local NVMe storage, so no volume KMS key."""
    family = instance_type.split(".")[1]
    match = _FAMILY.match(family)
    return family in _NVME_FAMILIES or bool(match and "d" in match.group("attributes"))


class ModelEndpoint(Construct):
    """Model (network-isolated, from ``model_package_arn``), endpoint config and endpoint: blue/green on a
    variant, or an inference component with rolling updates (``component``, None in variant mode)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: EndpointSettings,
        endpoint_name: str,
        model_package_arn: str,
        execution_role: iam.IRole,
        execution_role_policy: Construct,
        key: kms.IKey,
        capture_bucket: s3.IBucket,
        rollback_alarms: Sequence[cloudwatch.IAlarm],
    ) -> None:
        super().__init__(scope, construct_id)
        self.model = sagemaker.CfnModel(
            self,
            "Model",
            execution_role_arn=execution_role.role_arn,
            primary_container=sagemaker.CfnModel.ContainerDefinitionProperty(
                model_package_name=model_package_arn,
                # Set beside a model package as the SageMaker SDK's ModelPackage sets it: the decode slots.
                environment=settings.container_environment or None,
            ),
            # The container needs nothing from the network: SageMaker puts the model data in /opt/ml/model.
            enable_network_isolation=True,
        )
        # SageMaker pulls the image as the role as soon as the Model exists: without this dependency the
        # role's policy may not be attached yet and creation fails on the ECR pull.
        self.model.node.add_dependency(execution_role_policy)

        volume_key = None if has_instance_storage(settings.instance_type) else key.key_arn
        components = settings.inference_components
        self.config = sagemaker.CfnEndpointConfig(
            self,
            "Config",
            production_variants=[self._ic_variant(settings) if components else self._variant(settings)],
            kms_key_id=volume_key,
            # An endpoint of inference components names the role its components run as on the config.
            execution_role_arn=execution_role.role_arn if components else None,
            data_capture_config=None if components else self._data_capture(settings, capture_bucket, key),
        )
        if components and settings.data_capture_percent:
            Annotations.of(self.config).add_info(
                "endpointDataCapturePercent is not applied with endpointMode=inference-components: data "
                "capture is configured for variant-mode endpoints only (docs/stacks.md)."
            )
        if volume_key is None:
            reason = (
                f"{settings.instance_type} has local NVMe instance storage, encrypted in hardware; "
                "CreateEndpointConfig rejects a KmsKeyId for such instance types."
            )
            Annotations.of(self.config).add_info(f"No volume KMS key on the endpoint config: {reason}")
            acknowledge(self.config, "NIST.800.53.R5-SageMakerEndpointConfigurationKMSKeyConfigured", reason)

        self.endpoint_name: str = endpoint_name
        self.variant_name: str = VARIANT_NAME
        self.component: ModelComponent | None = None
        if not components:
            self.endpoint = self._blue_green_endpoint(settings, endpoint_name, rollback_alarms)
            return
        # The config changes only with the instance settings; releases update the component instead.
        self.endpoint = sagemaker.CfnEndpoint(
            self,
            "Endpoint",
            endpoint_name=endpoint_name,
            endpoint_config_name=self.config.attr_endpoint_config_name,
        )
        self.component = ModelComponent(
            self,
            "Component",
            settings=settings,
            endpoint=self.endpoint,
            variant_name=VARIANT_NAME,
            model=self.model,
            rollback_alarms=rollback_alarms,
        )

    def _blue_green_endpoint(
        self, settings: EndpointSettings, endpoint_name: str, rollback_alarms: Sequence[cloudwatch.IAlarm]
    ) -> sagemaker.CfnEndpoint:
        """Variant mode's endpoint: a new config is rolled out blue/green, rolled back by the alarms."""
        return sagemaker.CfnEndpoint(
            self,
            "Endpoint",
            endpoint_name=endpoint_name,
            endpoint_config_name=self.config.attr_endpoint_config_name,
            deployment_config=sagemaker.CfnEndpoint.DeploymentConfigProperty(
                blue_green_update_policy=sagemaker.CfnEndpoint.BlueGreenUpdatePolicyProperty(
                    traffic_routing_configuration=self._traffic_routing(settings),
                    termination_wait_in_seconds=settings.termination_wait_seconds,
                    maximum_execution_timeout_in_seconds=settings.deployment_timeout_seconds,
                ),
                auto_rollback_configuration=sagemaker.CfnEndpoint.AutoRollbackConfigProperty(
                    alarms=[
                        sagemaker.CfnEndpoint.AlarmProperty(alarm_name=a.alarm_name) for a in rollback_alarms
                    ],
                ),
            ),
            # An update creates a new endpoint config whose InitialInstanceCount would replace the count
            # autoscaling reached (a fleet of 4 under load back to 1). Retaining the variant properties keeps
            # the current DesiredInstanceCount and weight; data capture still follows the new config.
            # Without autoscaling the configured count is the one wanted, so nothing is retained.
            retain_all_variant_properties=settings.autoscaling,
            exclude_retained_variant_properties=[
                sagemaker.CfnEndpoint.VariantPropertyProperty(variant_property_type="DataCaptureConfig")
            ],
        )

    def _variant(self, settings: EndpointSettings) -> sagemaker.CfnEndpointConfig.ProductionVariantProperty:
        """The variant that serves the Model on ``initial_instance_count`` instances."""
        return sagemaker.CfnEndpointConfig.ProductionVariantProperty(
            variant_name=VARIANT_NAME,
            model_name=self.model.attr_model_name,
            instance_type=settings.instance_type,
            # Only the first deployment uses this count: updates keep the scaled count (see the endpoint).
            initial_instance_count=settings.initial_instance_count,
            initial_variant_weight=1.0,
            container_startup_health_check_timeout_in_seconds=settings.startup_timeout_seconds,
            model_data_download_timeout_in_seconds=settings.download_timeout_seconds,
        )

    @staticmethod
    def _ic_variant(settings: EndpointSettings) -> sagemaker.CfnEndpointConfig.ProductionVariantProperty:
        """A variant of instances only, which SageMaker adds and removes as the components' copies need them
        (managed instance scaling); its minimum is 0 when the copies may scale to zero, so that the last
        instance goes when the last copy does."""
        return sagemaker.CfnEndpointConfig.ProductionVariantProperty(
            variant_name=VARIANT_NAME,
            instance_type=settings.instance_type,
            initial_instance_count=settings.initial_instance_count,
            managed_instance_scaling=sagemaker.CfnEndpointConfig.ManagedInstanceScalingProperty(
                status="ENABLED",
                min_instance_count=0 if settings.scales_to_zero else settings.min_instance_count,
                max_instance_count=settings.max_instance_count,
            ),
            # A copy holds requests for seconds to a minute: send each to the copy with the fewest in flight.
            routing_config=sagemaker.CfnEndpointConfig.RoutingConfigProperty(
                routing_strategy="LEAST_OUTSTANDING_REQUESTS"
            ),
        )

    @staticmethod
    def _data_capture(
        settings: EndpointSettings, bucket: s3.IBucket, key: kms.IKey
    ) -> sagemaker.CfnEndpointConfig.DataCaptureConfigProperty | None:
        """Requests and responses, as JSON text, to s3://<bucket>/data-capture/ (SSE-KMS); None when 0%."""
        if settings.data_capture_percent == 0:
            return None
        return sagemaker.CfnEndpointConfig.DataCaptureConfigProperty(
            enable_capture=True,
            initial_sampling_percentage=settings.data_capture_percent,
            destination_s3_uri=bucket.s3_url_for_object(DATA_CAPTURE_PREFIX),
            kms_key_id=key.key_arn,
            capture_options=[
                sagemaker.CfnEndpointConfig.CaptureOptionProperty(capture_mode=mode)
                for mode in ("Input", "Output")
            ],
            # Store TGI's JSON bodies as text, not base64.
            capture_content_type_header=sagemaker.CfnEndpointConfig.CaptureContentTypeHeaderProperty(
                json_content_types=["application/json"]
            ),
        )

    @staticmethod
    def _traffic_routing(settings: EndpointSettings) -> sagemaker.CfnEndpoint.TrafficRoutingConfigProperty:
        """Canary: step% of the new fleet first, then the rest; linear: equal steps of step% each."""
        size = sagemaker.CfnEndpoint.CapacitySizeProperty(
            type="CAPACITY_PERCENT", value=settings.traffic_step_percent
        )
        canary = settings.traffic_shifting == "CANARY"
        return sagemaker.CfnEndpoint.TrafficRoutingConfigProperty(
            type=settings.traffic_shifting,
            wait_interval_in_seconds=settings.bake_seconds,
            canary_size=size if canary else None,
            linear_step_size=None if canary else size,
        )
