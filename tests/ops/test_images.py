"""`python -m ops images prune` against moto's server: ECR, SageMaker's registry and TrainingStack's outputs.

The repository holds the image of each registered version (approved, rejected, pending), the image the
pipelines run now (TrainingStack's ImageUri), unreferenced older builds and an untagged leftover; the
command must say what it would delete, delete nothing without --yes, and with it delete exactly those.
"""

from __future__ import annotations

import hashlib
import json

import boto3
import pytest

from ops.images import split_image_uri
from tests.ops.test_cli import _deploy_stack

GROUP = "jax-llm-gpt"
REPOSITORY = "jax-llm"
REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


def _push(ecr, name: str, tag: str | None) -> str:
    """Push a distinct image manifest (with `tag`, or untagged); returns its digest."""
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "layers": [],
            "config": {
                "digest": "sha256:" + hashlib.sha256(name.encode()).hexdigest(),
                "size": 1,
                "mediaType": "application/vnd.docker.container.image.v1+json",
            },
        }
    )
    # ECR computes the digest from the manifest; moto needs it given (it hashes nothing otherwise).
    request = {
        "repositoryName": REPOSITORY,
        "imageManifest": manifest,
        "imageDigest": "sha256:" + hashlib.sha256(manifest.encode()).hexdigest(),
    }
    if tag:
        request["imageTag"] = tag
    return ecr.put_image(**request)["image"]["imageId"]["imageDigest"]


@pytest.fixture
def repository(moto: str) -> dict[str, str]:
    """The repository, the registry's versions and TrainingStack; returns name -> digest."""
    ecr, sagemaker = (boto3.client(s, endpoint_url=moto) for s in ("ecr", "sagemaker"))
    ecr.create_repository(repositoryName=REPOSITORY)
    digests = {
        name: _push(ecr, name, None if name == "untagged" else name)
        for name in ("served", "rollback", "rejected", "pending", "current", "old1", "old2", "untagged")
    }
    sagemaker.create_model_package_group(ModelPackageGroupName=GROUP)
    for name, status in (
        ("rollback", "Approved"),
        ("served", "Approved"),
        ("rejected", "Rejected"),
        ("pending", "PendingManualApproval"),
    ):
        sagemaker.create_model_package(
            ModelPackageGroupName=GROUP,
            ModelApprovalStatus=status,
            InferenceSpecification={
                "Containers": [
                    {"Image": f"{REGISTRY}/{REPOSITORY}:{name}", "ModelDataUrl": "s3://b/model.tar.gz"}
                ],
                "SupportedContentTypes": ["application/json"],
                "SupportedResponseMIMETypes": ["application/json"],
            },
        )
    # A version registered by digest, and one whose image lives in another repository.
    for image in (f"{REGISTRY}/{REPOSITORY}@{digests['old2']}", f"{REGISTRY}/other-repo:old1"):
        sagemaker.create_model_package(
            ModelPackageGroupName=GROUP,
            ModelApprovalStatus="Approved",
            InferenceSpecification={
                "Containers": [{"Image": image, "ModelDataUrl": "s3://b/model.tar.gz"}],
                "SupportedContentTypes": ["application/json"],
                "SupportedResponseMIMETypes": ["application/json"],
            },
        )
    _deploy_stack(
        moto,
        "TrainingStack",
        {"ImageUri": f"{REGISTRY}/{REPOSITORY}:current", "ModelPackageGroupName": GROUP},
    )
    return digests


def _left(moto: str) -> set[str]:
    ecr = boto3.client("ecr", endpoint_url=moto)
    return {d["imageDigest"] for d in ecr.describe_images(repositoryName=REPOSITORY)["imageDetails"]}


def test_prune_says_what_it_would_delete_and_deletes_nothing_without_yes(cli, moto, repository):
    result = cli("images", "prune")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0] == f"{REPOSITORY}: 8 images, 6 used by a model version or the pipelines, 2 unused."
    assert sorted(line.split()[2] for line in lines[1:3]) == sorted(
        [repository["old1"], repository["untagged"]]
    )
    assert all(line.startswith("  would delete ") for line in lines[1:3])
    assert lines[3] == "Nothing deleted: run again with --yes to delete these."
    assert _left(moto) == set(repository.values())


def test_prune_yes_deletes_only_images_nothing_references(cli, moto, repository):
    result = cli("images", "prune", "--yes")
    assert result.code == 0, result.err
    assert result.out.splitlines()[-1] == "Deleted 2 images."
    kept = {repository[n] for n in ("served", "rollback", "rejected", "pending", "current", "old2")}
    assert _left(moto) == kept
    # Nothing left to prune: a second run deletes nothing.
    assert cli("images", "prune", "--yes").out.splitlines()[-1] == "Deleted 0 images."


def test_prune_without_the_repository_says_to_deploy(cli, moto):
    boto3.client("sagemaker", endpoint_url=moto).create_model_package_group(ModelPackageGroupName=GROUP)
    _deploy_stack(
        moto,
        "TrainingStack",
        {"ImageUri": f"{REGISTRY}/{REPOSITORY}:current", "ModelPackageGroupName": GROUP},
    )
    result = cli("images", "prune")
    assert result.code == 1 and f"ECR repository {REPOSITORY!r} does not exist" in result.err


@pytest.mark.parametrize(
    "uri, parts",
    [
        (f"{REGISTRY}/jax-llm:abc", (REGISTRY, "jax-llm", "abc")),
        (f"{REGISTRY}/team/jax-llm@sha256:0f", (REGISTRY, "team/jax-llm", "sha256:0f")),
        ("localhost:5000/jax-llm:1", ("localhost:5000", "jax-llm", "1")),
    ],
)
def test_image_uris_split_into_registry_repository_and_reference(uri, parts):
    assert split_image_uri(uri) == parts
