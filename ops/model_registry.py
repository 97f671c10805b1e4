"""Model Registry operations: list a group's versions with their metrics, approve or reject one."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ops.aws import Aws
from ops.errors import OpsError, not_found_as

APPROVAL_STATUSES = ("Approved", "Rejected", "PendingManualApproval")


@dataclass
class ModelVersion:
    """One model package version as the CLI shows it."""

    version: int
    arn: str
    approval_status: str
    created: datetime
    metrics: dict[str, str] = field(default_factory=dict)  # the package's CustomerMetadataProperties


def list_versions(aws: Aws, group: str, with_metrics: bool = True) -> list[ModelVersion]:
    """All versions in `group`, newest first, with the metrics the pipeline's register step records.

    The RegisterModel step writes val_loss (and the pipeline execution id) as CustomerMetadataProperties,
    so one DescribeModelPackage per version shows them without opening the training job.
    """
    sagemaker = aws.client("sagemaker")
    pages = sagemaker.get_paginator("list_model_packages").paginate(
        ModelPackageGroupName=group, SortBy="CreationTime", SortOrder="Descending"
    )
    versions = []
    for summary in (s for page in pages for s in page["ModelPackageSummaryList"]):
        metrics: dict[str, str] = {}
        if with_metrics:
            package = sagemaker.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
            metrics = package.get("CustomerMetadataProperties") or {}
        versions.append(
            ModelVersion(
                version=summary["ModelPackageVersion"],
                arn=summary["ModelPackageArn"],
                approval_status=summary["ModelApprovalStatus"],
                created=summary["CreationTime"],
                metrics=metrics,
            )
        )
    if not versions:
        _require_group(sagemaker, group)
    return versions


def _require_group(sagemaker, group: str) -> None:
    """Raises an OpsError when the model package group itself does not exist."""
    missing = f"Model package group {group!r} does not exist: deploy TrainingStack (it creates the group)."
    with not_found_as(missing):
        sagemaker.describe_model_package_group(ModelPackageGroupName=group)


def resolve_version(aws: Aws, group: str, version: str) -> str:
    """The ARN of `version` in `group`: a version number, or a model package ARN (returned as it is)."""
    if version.startswith("arn:"):
        return version
    if not version.isdigit():
        raise OpsError(f"--version must be a version number or a model package ARN, got {version!r}.")
    for candidate in list_versions(aws, group, with_metrics=False):
        if candidate.version == int(version):
            return candidate.arn
    raise OpsError(f"Group {group!r} has no version {version}: list them with `python -m ops versions`.")


def set_approval(aws: Aws, arn: str, status: str, description: str | None = None) -> dict:
    """Sets the approval status of the package `arn`; returns its description after the change."""
    if status not in APPROVAL_STATUSES:
        raise OpsError(f"approval status must be one of {', '.join(APPROVAL_STATUSES)}, got {status!r}.")
    sagemaker = aws.client("sagemaker")
    with not_found_as(f"Model package {arn} not found: list versions with `python -m ops versions`."):
        sagemaker.describe_model_package(ModelPackageName=arn)
    request = {"ModelPackageArn": arn, "ModelApprovalStatus": status}
    if description:
        request["ApprovalDescription"] = description
    sagemaker.update_model_package(**request)
    return sagemaker.describe_model_package(ModelPackageName=arn)


def default_instance_type(aws: Aws, arn: str) -> str:
    """The first instance type the version supports for batch transform, else for real-time inference."""
    with not_found_as(f"Model package {arn} not found: list versions with `python -m ops versions`."):
        package = aws.client("sagemaker").describe_model_package(ModelPackageName=arn)
    spec = package.get("InferenceSpecification") or {}
    types = spec.get("SupportedTransformInstanceTypes") or spec.get("SupportedRealtimeInferenceInstanceTypes")
    if not types:
        raise OpsError(f"Model package {arn} names no instance type it runs on: pass --instance-type.")
    return types[0]
