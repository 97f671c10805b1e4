"""stacks.nag: finding ids computed for acknowledgements, and acknowledgements that need a reason."""

from __future__ import annotations

import pytest
from aws_cdk import App, ArnFormat, Stack
from aws_cdk import aws_s3 as s3

from stacks.nag import acknowledge, wildcard_resource


@pytest.fixture()
def stack() -> Stack:
    """A bare stack to build constructs in."""
    return Stack(App(), "Bare")


def test_wildcard_resource_renders_references_as_cdk_nag_prints_them(stack):
    bucket = s3.Bucket(stack, "Bucket")
    logical_id = stack.get_logical_id(bucket.node.default_child)
    assert wildcard_resource(stack, bucket.arn_for_objects("*")) == f"Resource::<{logical_id}.Arn>/*"
    arn = stack.format_arn(service="logs", resource="log-group", resource_name="/aws/sagemaker/*",
                           arn_format=ArnFormat.COLON_RESOURCE_NAME)
    assert wildcard_resource(stack, arn) == \
        "Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:/aws/sagemaker/*"
    assert wildcard_resource(stack, "*") == "Resource::*"


def test_acknowledgement_without_a_real_reason_is_refused(stack):
    bucket = s3.Bucket(stack, "Bucket")
    with pytest.raises(ValueError, match="needs a real reason"):
        acknowledge(bucket, "AwsSolutions-S1", "n/a")
