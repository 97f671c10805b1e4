"""The Lambda handlers' test environment, and model package versions registered in moto's SageMaker as the
pipelines register them: with a `model.tar.gz` (ModelDataUrl) or uncompressed under an S3 prefix
(ModelDataSource)."""

from __future__ import annotations

# What the Lambda runtime gives a function (a region), with fake credentials: no call can reach AWS.
FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}
GROUP = "jax-llm-gpt"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/jax-llm:abc"
TAR_GZ = {"ModelDataUrl": "s3://b/model.tar.gz"}
PREFIX = {
    "ModelDataSource": {
        "S3DataSource": {
            "S3Uri": "s3://b/training/j2/output/model/",
            "S3DataType": "S3Prefix",
            "CompressionType": "None",
        }
    }
}


def register(client, status: str, data: dict = TAR_GZ) -> str:
    """A new version of GROUP with `status` and model data `data`; returns its ARN."""
    return client.create_model_package(
        ModelPackageGroupName=GROUP,
        ModelApprovalStatus=status,
        InferenceSpecification={
            "Containers": [{"Image": IMAGE, **data}],
            "SupportedContentTypes": ["application/json"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
    )["ModelPackageArn"]
