"""The ECR repository for the jax-llm image, and the image built from containers/jax-llm copied into it."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_kms as kms
from constructs import Construct

from jax_llm.contract.paths import IMAGE_SOURCE
from stacks.constructs.image_copy import ImageCopy
from stacks.settings import ImageSettings, StorageSettings


class ImageRepository(Construct):
    """A scanned, immutable-tag ECR repository holding the image under a content-derived tag.

    The image is a Docker image asset (built and pushed to the CDK asset repository by ``cdk deploy``;
    ``cdk synth`` only stages the build context) that an ECRDeployment copies into our repository
    under its asset hash, so the tag changes exactly when the build context or build arguments do.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        repository_name: str,
        key: kms.IKey,
        image: ImageSettings,
        storage: StorageSettings,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.repository = ecr.Repository(
            self,
            "Repository",
            repository_name=repository_name,
            image_scan_on_push=True,
            image_tag_mutability=ecr.TagMutability.IMMUTABLE,
            encryption=ecr.RepositoryEncryption.KMS,
            encryption_key=key,
            # Only untagged images expire. Every image this project pushes is tagged (its content hash), and a
            # tagged image may be what a registered model version (a rollback target) or the pipelines run:
            # those are deleted only by `python -m ops images prune`, which checks the references first.
            lifecycle_rules=[
                ecr.LifecycleRule(
                    description=f"Expire untagged images {image.untagged_image_days} days after their push",
                    tag_status=ecr.TagStatus.UNTAGGED,
                    max_image_age=Duration.days(image.untagged_image_days),
                )
            ],
            removal_policy=removal_policy,
        )
        self.asset = ecr_assets.DockerImageAsset(
            self,
            "Asset",
            directory=str(IMAGE_SOURCE),
            platform=ecr_assets.Platform.LINUX_AMD64,
            build_args={"VARIANT": "cpu"} if image.cpu_only else None,  # the Dockerfile's default: gpu
        )
        # The asset hash covers the build context and build arguments: a content tag, stable across synths.
        self.image_tag: str = self.asset.asset_hash
        self.image_uri: str = self.repository.repository_uri_for_tag(self.image_tag)
        self.copy = ImageCopy(
            self,
            "Copy",
            source_repository=self.asset.repository,
            source_uri=self.asset.image_uri,
            repository=self.repository,
            destination_uri=self.image_uri,
            key=key,
            storage=storage,
        )
        # Whatever starts containers from image_uri depends on this: the copy has finished by then.
        self.deployment: Construct = self.copy.deployment
