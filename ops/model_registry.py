"""Model Registry operations: list a group's versions with their metrics, approve or reject one."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime

from ops.aws import Aws
from botocore.exceptions import ClientError

from ops.errors import OpsError, is_not_found

APPROVAL_STATUSES = ("Approved", "Rejected", "PendingManualApproval")
_S3_URI = re.compile(r"^s3://([^/]+)/(.+)$")


@dataclass
class ModelVersion:
    """One model package version as the CLI shows it."""

    version: int
    arn: str
    approval_status: str
    created: datetime
    metrics: dict[str, float | str] = field(default_factory=dict)


def _flatten(document: object, prefix: str = "") -> dict[str, float | str]:
    """Flattens nested metric JSON to dotted keys; SageMaker's {"value": x, "standard_deviation": ...} leaves become x."""
    if isinstance(document, dict):
        if "value" in document and not isinstance(document["value"], (dict, list)):
            return {prefix.rstrip("."): document["value"]}
        out: dict[str, float | str] = {}
        for key, value in document.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    if isinstance(document, (int, float, str)) and prefix:
        return {prefix.rstrip("."): document}
    return {}


def _statistics_metrics(aws: Aws, package: dict) -> dict[str, float | str]:
    """Metrics from the package's ModelMetrics statistics JSON in S3 (what the pipeline's register step points at)."""
    out: dict[str, float | str] = {}
    for section in package.get("ModelMetrics", {}).values():
        for report in section.values():
            match = _S3_URI.match(report.get("S3Uri", ""))
            if not match:
                continue
            body = aws.client("s3").get_object(Bucket=match.group(1), Key=match.group(2))["Body"].read()
            try:
                out.update(_flatten(json.loads(body)))
            except json.JSONDecodeError as exc:
                raise OpsError(f"{report['S3Uri']} is not JSON: {exc}") from exc
    return out


def list_versions(aws: Aws, group: str, with_metrics: bool = True) -> list[ModelVersion]:
    """All versions in `group`, newest first, with metrics from customer metadata and the statistics report."""
    sagemaker = aws.client("sagemaker")
    pages = sagemaker.get_paginator("list_model_packages").paginate(
        ModelPackageGroupName=group, SortBy="CreationTime", SortOrder="Descending"
    )
    versions = []
    for summary in (s for page in pages for s in page["ModelPackageSummaryList"]):
        metrics: dict[str, float | str] = {}
        if with_metrics:
            package = sagemaker.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
            metrics.update(package.get("CustomerMetadataProperties") or {})
            metrics.update(_statistics_metrics(aws, package))
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
    try:
        sagemaker.describe_model_package_group(ModelPackageGroupName=group)
    except ClientError as exc:
        if not is_not_found(exc):
            raise
        raise OpsError(
            f"Model package group {group!r} does not exist: deploy TrainingStack (it creates the group)."
        ) from exc


def resolve_version(aws: Aws, group: str, version: str) -> str:
    """The ARN of `version` in `group`: a version number, or a model package ARN passed through after a check."""
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
    try:
        sagemaker.describe_model_package(ModelPackageName=arn)
    except ClientError as exc:
        if not is_not_found(exc):
            raise
        raise OpsError(f"Model package {arn} not found: list versions with `python -m ops versions`.") from exc
    request = {"ModelPackageArn": arn, "ModelApprovalStatus": status}
    if description:
        request["ApprovalDescription"] = description
    sagemaker.update_model_package(**request)
    return sagemaker.describe_model_package(ModelPackageName=arn)
