"""Sections for the resources every stack names: project, image repository, storage, model registry."""

from __future__ import annotations

import re
from dataclasses import dataclass

from stacks.settings.context import Context

# Lower-case name usable in ECR repository names, SageMaker resource names and S3 prefixes.
RESOURCE_NAME = re.compile(r"^[a-z][a-z0-9-]{1,38}[a-z0-9]$")
# S3 bucket naming rules (without the rarely used dotted forms).
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
# Retention periods CloudWatch Logs accepts, in days.
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)
REMOVAL_POLICIES = ("retain", "destroy")


@dataclass(frozen=True)
class ProjectSettings:
    """Naming and lifecycle of everything the stacks create."""

    name: str  # projectName: prefix of named resources (ECR repository, SageMaker names)
    removal_policy: str  # removalPolicy: "retain" keeps data-bearing resources on stack deletion

    @classmethod
    def from_context(cls, ctx: Context) -> ProjectSettings:
        """Read the project section."""
        return cls(
            name=ctx.text(
                "projectName",
                RESOURCE_NAME,
                "3-40 characters: lower-case letters, digits and '-', starting with a letter",
            ),
            removal_policy=ctx.choice("removalPolicy", REMOVAL_POLICIES),
        )


@dataclass(frozen=True)
class ImageSettings:
    """The container image built from containers/jax-llm and its ECR repository."""

    cpu_only: bool  # imageCpuOnly: build the CPU-only variant (no CUDA wheels, no EFA)
    untagged_image_days: int  # ecrUntaggedImageDays: untagged images expire this many days after their push

    @classmethod
    def from_context(cls, ctx: Context) -> ImageSettings:
        """Read the image section."""
        return cls(
            cpu_only=ctx.boolean("imageCpuOnly"),
            untagged_image_days=ctx.integer("ecrUntaggedImageDays", minimum=1, maximum=3650),
        )


@dataclass(frozen=True)
class StorageSettings:
    """S3 buckets, the KMS key and log retention."""

    data_bucket_name: str  # dataBucketName: an existing bucket with training data; "" creates one
    noncurrent_version_days: int  # noncurrentVersionExpirationDays: old object versions kept this long
    access_log_retention_days: int  # accessLogRetentionDays: S3 server access logs expire after this
    log_retention_days: int  # logRetentionDays: CloudWatch Logs retention for the stacks' log groups
    kms_pending_window_days: int  # kmsPendingWindowDays: waiting period before a deleted key is gone

    @classmethod
    def from_context(cls, ctx: Context) -> StorageSettings:
        """Read the storage section."""
        return cls(
            data_bucket_name=ctx.text(
                "dataBucketName",
                BUCKET_NAME,
                "an S3 bucket name (3-63 lower-case letters, digits, '-')",
                allow_empty=True,
            ),
            noncurrent_version_days=ctx.integer("noncurrentVersionExpirationDays", minimum=1, maximum=3650),
            access_log_retention_days=ctx.integer("accessLogRetentionDays", minimum=1, maximum=3650),
            log_retention_days=ctx.choice("logRetentionDays", LOG_RETENTION_DAYS),
            kms_pending_window_days=ctx.integer("kmsPendingWindowDays", minimum=7, maximum=30),
        )


@dataclass(frozen=True)
class RegistrySettings:
    """The SageMaker Model Registry."""

    model_package_group_name: str  # modelPackageGroupName: the group every trained model is registered in

    @classmethod
    def from_context(cls, ctx: Context) -> RegistrySettings:
        """Read the registry section."""
        return cls(
            model_package_group_name=ctx.text(
                "modelPackageGroupName",
                re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$"),
                "1-63 letters, digits and '-', not starting or ending with '-'",
            ),
        )
