"""`python -m ops generate`: a batch transform job over a JSON Lines file on a registered version.

SageMaker is moto's server: the Model and the transform job are created there (moto completes a job at
once), every request checked by botocore against the API model first. A failed job, which moto cannot
produce, is a Stubber's answer on a real client.
"""

from __future__ import annotations

import datetime
import json

import boto3
import pytest
from botocore.stub import Stubber

from ops import batch_generation
from ops.aws import Aws
from ops.errors import OpsError

GROUP = "jax-llm-gpt"
ROLE = "arn:aws:iam::123456789012:role/sagemaker-execution"
KEY = "arn:aws:kms:us-east-1:123456789012:key/0b5a2c10-1111-2222-3333-444455556666"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/jax-llm:abc"
INPUT = "s3://jax-llm-artifacts/eval/prompts.jsonl"
OUTPUT = "s3://jax-llm-artifacts/eval/answers"


@pytest.fixture
def versions(moto: str) -> list[str]:
    """TrainingStack's outputs, and two versions: model.tar.gz, and an uncompressed S3 prefix."""
    template = {
        "Resources": {
            "Marker": {
                "Type": "AWS::SSM::Parameter",
                "Properties": {"Name": "/TrainingStack/deployed", "Type": "String", "Value": "yes"},
            }
        },
        "Outputs": {
            k: {"Value": v}
            for k, v in {"ExecutionRoleArn": ROLE, "KmsKeyArn": KEY, "ModelPackageGroupName": GROUP}.items()
        },
    }
    boto3.client("cloudformation", endpoint_url=moto).create_stack(
        StackName="TrainingStack", TemplateBody=json.dumps(template)
    )
    sagemaker = boto3.client("sagemaker", endpoint_url=moto)
    sagemaker.create_model_package_group(ModelPackageGroupName=GROUP)
    containers = [
        {"Image": IMAGE, "ModelDataUrl": "s3://jax-llm-artifacts/training/j1/output/model.tar.gz"},
        {
            "Image": IMAGE,
            "ModelDataSource": {
                "S3DataSource": {
                    "S3Uri": "s3://jax-llm-artifacts/training/j2/output/model/",
                    "S3DataType": "S3Prefix",
                    "CompressionType": "None",
                }
            },
        },
    ]
    return [
        sagemaker.create_model_package(
            ModelPackageGroupName=GROUP,
            ModelApprovalStatus="Approved",
            InferenceSpecification={
                "Containers": [container],
                "SupportedContentTypes": ["application/json"],
                "SupportedResponseMIMETypes": ["application/json"],
                "SupportedRealtimeInferenceInstanceTypes": ["ml.g5.xlarge", "ml.g5.2xlarge"],
            },
        )["ModelPackageArn"]
        for container in containers
    ]


@pytest.mark.parametrize("version", ["1", "2"])
def test_generate_runs_a_transform_job_split_by_line_and_waits_for_it(cli, moto, versions, version):
    result = cli("generate", "--model-package", version, "--input", INPUT, "--output", OUTPUT, "--wait")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].startswith("Started transform job jax-llm-generate-v")
    assert versions[int(version) - 1] in lines[0]
    assert "ml.g5.xlarge x 1" in lines[0]  # the version's first instance type
    assert lines[-1] == f"Answers: {OUTPUT}/prompts.jsonl.out"
    sagemaker = boto3.client("sagemaker", endpoint_url=moto)
    (summary,) = sagemaker.list_transform_jobs()["TransformJobSummaries"]
    job = sagemaker.describe_transform_job(TransformJobName=summary["TransformJobName"])
    assert job["TransformInput"] == {
        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": INPUT}},
        "ContentType": "application/json",
        "SplitType": "Line",
    }
    assert job["TransformOutput"] == {
        "S3OutputPath": OUTPUT,
        "Accept": "application/json",
        "AssembleWith": "Line",
        "KmsKeyId": KEY,
    }
    assert job["TransformResources"] == {
        "InstanceType": "ml.g5.xlarge",
        "InstanceCount": 1,
        "VolumeKmsKeyId": KEY,
    }
    assert job["ModelClientConfig"] == {"InvocationsTimeoutInSeconds": 3600, "InvocationsMaxRetries": 1}
    assert "MaxConcurrentTransforms" not in job  # the container's /execution-parameters decide
    # The Model made for the job is gone once the job ended.
    assert sagemaker.list_models()["Models"] == []


def test_generate_without_wait_leaves_the_job_running_and_says_how_to_follow_it(cli, moto, versions):
    result = cli(
        "generate",
        "--model-package",
        versions[0],
        "--input",
        INPUT,
        "--output",
        OUTPUT,
        "--instance-type",
        "ml.g5.2xlarge",
        "--instance-count",
        "2",
        "--max-concurrent",
        "8",
    )
    assert result.code == 0, result.err
    assert "describe-transform-job --transform-job-name jax-llm-generate-v1-" in result.out
    sagemaker = boto3.client("sagemaker", endpoint_url=moto)
    (summary,) = sagemaker.list_transform_jobs()["TransformJobSummaries"]
    job = sagemaker.describe_transform_job(TransformJobName=summary["TransformJobName"])
    assert job["TransformResources"]["InstanceType"] == "ml.g5.2xlarge"
    assert job["TransformResources"]["InstanceCount"] == 2 and job["MaxConcurrentTransforms"] == 8
    (model,) = sagemaker.list_models()["Models"]
    described = sagemaker.describe_model(ModelName=model["ModelName"])
    assert described["PrimaryContainer"]["ModelPackageName"] == versions[0]


@pytest.mark.parametrize("flag, value", [("--input", "prompts.jsonl"), ("--output", "https://bucket/x")])
def test_a_wrong_uri_is_refused_before_anything_is_created(cli, moto, versions, flag, value):
    args = {"--input": INPUT, "--output": OUTPUT, flag: value}
    result = cli("generate", "--model-package", "1", *[a for pair in args.items() for a in pair])
    assert result.code == 1 and f"{flag} must be an s3://bucket/key URI" in result.err
    assert boto3.client("sagemaker", endpoint_url=moto).list_models()["Models"] == []


def test_a_missing_version_is_a_clear_error(cli, versions):
    result = cli("generate", "--model-package", "9", "--input", INPUT, "--output", OUTPUT)
    assert result.code == 1 and "has no version 9" in result.err


def test_a_failed_job_says_why_and_its_model_is_deleted(monkeypatch):
    sagemaker = boto3.client(
        "sagemaker", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    monkeypatch.setattr(Aws, "client", lambda self, service: sagemaker)
    name = "jax-llm-generate-v2-20261206-070000"
    now = datetime.datetime(2026, 12, 6, 7, tzinfo=datetime.UTC)
    with Stubber(sagemaker) as stubber:
        stubber.add_response(
            "describe_transform_job",
            {
                "TransformJobName": name,
                "TransformJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:transform-job/{name}",
                "TransformJobStatus": "Failed",
                "ModelName": name,
                "FailureReason": "ClientError: line 3: max_new_tokens must be at least 1",
                "TransformInput": {
                    "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": INPUT}}
                },
                "TransformResources": {"InstanceType": "ml.g5.xlarge", "InstanceCount": 1},
                "CreationTime": now,
            },
            {"TransformJobName": name},
        )
        stubber.add_response("delete_model", {}, {"ModelName": name})
        with pytest.raises(OpsError, match="failed: ClientError: line 3: max_new_tokens"):
            batch_generation.wait(Aws(), name, poll_s=0)
        stubber.assert_no_pending_responses()
