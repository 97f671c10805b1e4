"""stacks.checkov: skips land in the resource's template metadata, each with its reason."""

from __future__ import annotations

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_s3 as s3
from aws_cdk.assertions import Template

from stacks.checkov import skip_checkov


def test_skips_accumulate_in_the_resource_metadata():
    stack = Stack(App(), "Bare")
    bucket = s3.Bucket(stack, "Bucket")
    skip_checkov(bucket, "CKV_AWS_18", "This bucket is the access-log destination itself.")
    skip_checkov(bucket.node.default_child, "CKV_AWS_21", "Scratch data that is regenerated on every run.")
    (resource,) = Template.from_stack(stack).find_resources("AWS::S3::Bucket").values()
    assert resource["Metadata"]["checkov"] == {
        "skip": [
            {"id": "CKV_AWS_18", "comment": "This bucket is the access-log destination itself."},
            {"id": "CKV_AWS_21", "comment": "Scratch data that is regenerated on every run."},
        ]
    }


def test_skip_without_a_real_reason_is_refused():
    bucket = s3.Bucket(Stack(App(), "Bare"), "Bucket")
    with pytest.raises(ValueError, match="needs a real reason"):
        skip_checkov(bucket, "CKV_AWS_18", "")
