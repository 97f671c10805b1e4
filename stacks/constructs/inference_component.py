"""The served model version as a SageMaker inference component, updated by rolling deployments.

In inference-components mode (``EndpointSettings.inference_components``) the endpoint's variant holds only
instances (managed instance scaling) and this component holds the model: its compute requirements (GPUs and
host memory of one copy) and its copies, which autoscaling moves between ``endpointMinCopyCount`` (0: scale to
zero) and ``endpointMaxCopyCount``. A release changes ``Specification.ModelName`` (a new Model for the new
model package version), which CloudFormation applies as an update of this component, not a replacement
(CloudFormation reference, AWS::SageMaker::InferenceComponent InferenceComponentSpecification: "Update
requires: No interruption"). SageMaker rolls the copies over in batches of ``endpointTrafficStepPercent`` % of
them, watching the rollback alarms for ``endpointBakeSeconds`` after each batch and rolling every copy back
when one fires (``DeploymentConfig.RollingUpdatePolicy`` and ``AutoRollbackConfiguration``).
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from stacks.settings import EndpointSettings

# SageMaker's bound for one rolling update of an inference component (MaximumExecutionTimeoutInSeconds).
MAX_ROLLING_UPDATE_SECONDS = 28800


def inference_component_name(endpoint_name: str) -> str:
    """The component's fixed name: alarms, autoscaling and the log group name it without a reference."""
    return f"{endpoint_name}-model"


class ModelComponent(Construct):
    """An inference component on ``endpoint``'s variant serving ``model``, with rolling updates that
    ``rollback_alarms`` roll back."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: EndpointSettings,
        endpoint: sagemaker.CfnEndpoint,
        variant_name: str,
        model: sagemaker.CfnModel,
        rollback_alarms: Sequence[cloudwatch.IAlarm],
    ) -> None:
        super().__init__(scope, construct_id)
        self.component_name = inference_component_name(endpoint.endpoint_name)
        requirements = sagemaker.CfnInferenceComponent.InferenceComponentComputeResourceRequirementsProperty(
            # A CPU instance type has no accelerator to reserve: the field is left out for it.
            number_of_accelerator_devices_required=settings.copy_accelerators or None,
            min_memory_required_in_mb=settings.copy_memory_mb,
        )
        ic = sagemaker.CfnInferenceComponent
        batch = ic.InferenceComponentCapacitySizeProperty
        self.component = sagemaker.CfnInferenceComponent(
            self,
            "Component",
            inference_component_name=self.component_name,
            endpoint_name=endpoint.attr_endpoint_name,
            variant_name=variant_name,
            specification=sagemaker.CfnInferenceComponent.InferenceComponentSpecificationProperty(
                model_name=model.attr_model_name,
                compute_resource_requirements=requirements,
                startup_parameters=ic.InferenceComponentStartupParametersProperty(
                    container_startup_health_check_timeout_in_seconds=settings.startup_timeout_seconds,
                    model_data_download_timeout_in_seconds=settings.download_timeout_seconds,
                ),
            ),
            runtime_config=sagemaker.CfnInferenceComponent.InferenceComponentRuntimeConfigProperty(
                copy_count=settings.initial_copy_count
            ),
            deployment_config=sagemaker.CfnInferenceComponent.InferenceComponentDeploymentConfigProperty(
                rolling_update_policy=ic.InferenceComponentRollingUpdatePolicyProperty(
                    maximum_batch_size=batch(type="CAPACITY_PERCENT", value=settings.traffic_step_percent),
                    wait_interval_in_seconds=settings.bake_seconds,
                    maximum_execution_timeout_in_seconds=min(
                        settings.deployment_timeout_seconds, MAX_ROLLING_UPDATE_SECONDS
                    ),
                    # A failed version goes back everywhere at once, not batch by batch.
                    rollback_maximum_batch_size=batch(type="CAPACITY_PERCENT", value=100),
                ),
                auto_rollback_configuration=sagemaker.CfnInferenceComponent.AutoRollbackConfigurationProperty(
                    alarms=[
                        sagemaker.CfnInferenceComponent.AlarmProperty(alarm_name=a.alarm_name)
                        for a in rollback_alarms
                    ]
                ),
            ),
        )
