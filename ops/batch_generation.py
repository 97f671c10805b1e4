"""Batch generation: a SageMaker batch transform job that answers a JSON Lines file of prompts with a
registered model version, on instances that exist only while the job runs.

Each line of the input is one request in TGI's schema (``{"inputs": "...", "parameters": {...}}``, as
``python -m ops invoke`` sends). The job splits the file by line (``SplitType: Line``) and sends each line to
the container as one ``application/json`` request (the container's batch strategy, SINGLE_RECORD, is what
its ``/execution-parameters`` advertises); ``AssembleWith: Line`` writes the answers in the input's order,
one line each, to ``<output>/<input file name>.out``. How many requests run at once and the largest payload
come from the container's ``/execution-parameters`` unless ``max_concurrent`` is given; each request may run
for up to an hour (``ModelClientConfig``), where an endpoint's InvokeEndpoint stops at 60 s.

SageMaker runs a transform job on a Model: one is created from the version (``ModelPackageName``, network
isolated, as EndpointStack's) under the job's name, and deleted when the job is waited for.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from ops.aws import Aws
from ops.errors import OpsError
from stacks.constructs.release_handler.index import version_of

S3_URI = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$")
REQUEST_TYPE = "application/json"  # one TGI request per record (line)
INVOCATION_TIMEOUT_S = 3600  # ModelClientConfig's maximum: long generations are what batch is for
TERMINAL = ("Completed", "Failed", "Stopped")


@dataclass(frozen=True)
class GenerationJob:
    """What one ``ops generate`` asks for."""

    model_package_arn: str
    input_uri: str  # s3://bucket/prompts.jsonl (or a prefix of such files)
    output_uri: str  # s3://bucket/prefix: answers land in <prefix>/<input file name>.out
    instance_type: str
    instance_count: int = 1
    max_concurrent: int | None = None  # None: the container's /execution-parameters decide

    def validate(self) -> None:
        """An OpsError naming the argument that SageMaker would refuse, before anything is created."""
        for flag, uri in (("--input", self.input_uri), ("--output", self.output_uri)):
            if not S3_URI.match(uri):
                raise OpsError(f"{flag} must be an s3://bucket/key URI, not {uri!r}")
        if self.instance_count < 1 or (self.max_concurrent is not None and self.max_concurrent < 1):
            raise OpsError("--instance-count and --max-concurrent must be at least 1")


def job_name(model_package_arn: str, now: datetime) -> str:
    """jax-llm-generate-v<version>-<UTC time>: unique per second, within SageMaker's 63 characters."""
    return f"jax-llm-generate-v{version_of(model_package_arn)}-{now:%Y%m%d-%H%M%S}"


def model_request(name: str, job: GenerationJob, role_arn: str) -> dict:
    """CreateModel: the version's container and model data, with no network (it needs none)."""
    return {
        "ModelName": name,
        "ExecutionRoleArn": role_arn,
        "PrimaryContainer": {"ModelPackageName": job.model_package_arn},
        "EnableNetworkIsolation": True,
    }


def transform_request(name: str, job: GenerationJob, kms_key_arn: str | None) -> dict:
    """CreateTransformJob: the input split by line, one request each, the answers assembled by line."""
    request: dict = {
        "TransformJobName": name,
        "ModelName": name,
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": job.input_uri}},
            "ContentType": REQUEST_TYPE,
            "SplitType": "Line",
        },
        "TransformOutput": {"S3OutputPath": job.output_uri, "Accept": REQUEST_TYPE, "AssembleWith": "Line"},
        "TransformResources": {"InstanceType": job.instance_type, "InstanceCount": job.instance_count},
        "ModelClientConfig": {
            "InvocationsTimeoutInSeconds": INVOCATION_TIMEOUT_S,
            "InvocationsMaxRetries": 1,
        },
    }
    if job.max_concurrent is not None:
        request["MaxConcurrentTransforms"] = job.max_concurrent
    if kms_key_arn:  # the project's key encrypts the answers and the instances' volumes
        request["TransformOutput"]["KmsKeyId"] = kms_key_arn
        request["TransformResources"]["VolumeKmsKeyId"] = kms_key_arn
    return request


def start(
    aws: Aws, job: GenerationJob, *, role_arn: str, kms_key_arn: str | None, now: datetime | None = None
) -> str:
    """Creates the Model and starts the transform job; returns the job's name (the Model's too)."""
    job.validate()
    name = job_name(job.model_package_arn, now or datetime.now(UTC))
    sagemaker = aws.client("sagemaker")
    sagemaker.create_model(**model_request(name, job, role_arn))
    try:
        sagemaker.create_transform_job(**transform_request(name, job, kms_key_arn))
    except Exception:
        sagemaker.delete_model(ModelName=name)  # nothing would ever use it
        raise
    return name


def wait(
    aws: Aws, name: str, *, poll_s: float = 30.0, progress: Callable[[str], None] = lambda status: None
) -> dict:
    """Polls the job until it ends; deletes its Model; returns DescribeTransformJob's answer, or raises an
    OpsError with SageMaker's reason when it failed or was stopped."""
    sagemaker = aws.client("sagemaker")
    while True:
        described = sagemaker.describe_transform_job(TransformJobName=name)
        status = described["TransformJobStatus"]
        progress(status)
        if status in TERMINAL:
            break
        time.sleep(poll_s)
    sagemaker.delete_model(ModelName=name)
    if status != "Completed":
        reason = described.get("FailureReason", "no reason given")
        raise OpsError(
            f"Transform job {name} {status.lower()}: {reason} "
            f"(its logs: /aws/sagemaker/TransformJobs, streams {name}/...)"
        )
    return described


def output_location(job: GenerationJob) -> str:
    """Where the answers to a single input file land: <output>/<input file name>.out."""
    return f"{job.output_uri.rstrip('/')}/{job.input_uri.rstrip('/').rsplit('/', 1)[-1]}.out"
