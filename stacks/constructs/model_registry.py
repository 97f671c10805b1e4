"""The SageMaker Model Registry group that every trained model version is registered in."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from stacks.settings import RegistrySettings


class ModelRegistry(Construct):
    """A model package group; versions land in it as PendingManualApproval and are approved by people."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        registry: RegistrySettings,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.group = sagemaker.CfnModelPackageGroup(
            self,
            "Group",
            model_package_group_name=registry.model_package_group_name,
            model_package_group_description="GPT models trained with JAX/Flax on SageMaker",
        )
        self.group.apply_removal_policy(removal_policy)
        self.group_name: str = registry.model_package_group_name
        self.group_arn: str = self.group.attr_model_package_group_arn
