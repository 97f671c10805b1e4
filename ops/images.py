"""Prune the image repository: delete only images that no model package version and no pipeline uses.

The repository's lifecycle rule expires untagged images only, so every registered model version stays
deployable (a rollback target's image included). Tagged images that nothing references any more are
deleted here, after saying which: an image is kept when any model package in the group (whatever its
approval status) or TrainingStack's current image (what the pipelines run) names it by a tag or by digest.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from botocore.exceptions import ClientError

from ops import model_registry
from ops.aws import Aws
from ops.errors import OpsError

BATCH = 100  # BatchDeleteImage takes at most 100 image ids


@dataclass(frozen=True)
class RepositoryImage:
    """One image of the repository."""

    digest: str
    tags: tuple[str, ...]
    pushed_at: datetime


def split_image_uri(uri: str) -> tuple[str, str, str]:
    """(registry, repository, tag or digest) of ``<registry>/<repository>:<tag>`` or ``...@sha256:...``."""
    registry, _, rest = uri.partition("/")
    if "@" in rest:
        repository, _, reference = rest.partition("@")
    else:
        repository, _, reference = rest.rpartition(":")
    if not (registry and repository and reference):
        raise OpsError(f"{uri!r} is not an image URI (<registry>/<repository>:<tag> or @<digest>).")
    return registry, repository, reference


def references(aws: Aws, group: str, current_image_uri: str) -> tuple[str, set[str]]:
    """(repository, the tags and digests in it that the group's versions or the pipelines use)."""
    registry, repository, reference = split_image_uri(current_image_uri)
    used = {reference}
    sagemaker = aws.client("sagemaker")
    for version in model_registry.list_versions(aws, group, with_metrics=False):
        package = sagemaker.describe_model_package(ModelPackageName=version.arn)
        for container in package.get("InferenceSpecification", {}).get("Containers", []):
            image_registry, image_repository, image_reference = split_image_uri(container["Image"])
            if (image_registry, image_repository) == (registry, repository):
                used.add(image_reference)
    return repository, used


def repository_images(aws: Aws, repository: str) -> list[RepositoryImage]:
    """Every image in ``repository``, oldest first."""
    ecr = aws.client("ecr")
    try:
        pages = list(ecr.get_paginator("describe_images").paginate(repositoryName=repository))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "RepositoryNotFoundException":
            raise
        raise OpsError(f"ECR repository {repository!r} does not exist: deploy TrainingStack.") from exc
    images = [
        RepositoryImage(d["imageDigest"], tuple(d.get("imageTags", [])), d["imagePushedAt"])
        for page in pages
        for d in page["imageDetails"]
    ]
    return sorted(images, key=lambda i: i.pushed_at)


def unreferenced(images: list[RepositoryImage], used: set[str]) -> list[RepositoryImage]:
    """The images none of whose tags, nor its digest, is in ``used``."""
    return [i for i in images if i.digest not in used and not used.intersection(i.tags)]


def delete(aws: Aws, repository: str, images: list[RepositoryImage]) -> list[str]:
    """Delete ``images`` by digest; returns the failures, each saying which image and why."""
    ecr, failures = aws.client("ecr"), []
    for start in range(0, len(images), BATCH):
        ids = [{"imageDigest": i.digest} for i in images[start : start + BATCH]]
        result = ecr.batch_delete_image(repositoryName=repository, imageIds=ids)
        failures += [
            f"{f['imageId'].get('imageDigest')}: {f.get('failureCode')} {f.get('failureReason', '')}"
            for f in result.get("failures", [])
        ]
    return failures
