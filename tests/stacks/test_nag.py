"""stacks.nag: finding ids computed for acknowledgements, and acknowledgements that need a reason."""

from __future__ import annotations

import json

import pytest
from aws_cdk import App, ArnFormat, Stack
from aws_cdk import aws_s3 as s3

from stacks.nag import acknowledge, add_nag_checks, wildcard_resource


@pytest.fixture()
def stack() -> Stack:
    """A bare stack to build constructs in."""
    return Stack(App(), "Bare")


def test_wildcard_resource_renders_references_as_cdk_nag_prints_them(stack):
    bucket = s3.Bucket(stack, "Bucket")
    logical_id = stack.get_logical_id(bucket.node.default_child)
    assert wildcard_resource(stack, bucket.arn_for_objects("*")) == f"Resource::<{logical_id}.Arn>/*"
    arn = stack.format_arn(
        service="logs",
        resource="log-group",
        resource_name="/aws/sagemaker/*",
        arn_format=ArnFormat.COLON_RESOURCE_NAME,
    )
    assert (
        wildcard_resource(stack, arn)
        == "Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:/aws/sagemaker/*"
    )
    assert wildcard_resource(stack, "*") == "Resource::*"


def test_acknowledgement_without_a_real_reason_is_refused(stack):
    bucket = s3.Bucket(stack, "Bucket")
    with pytest.raises(ValueError, match="needs a real reason"):
        acknowledge(bucket, "AwsSolutions-S1", "n/a")


def test_both_packs_run_at_synth_and_an_acknowledged_finding_is_not_reported(tmp_path):
    app = App(outdir=str(tmp_path))
    bucket = s3.Bucket(Stack(app, "Bare"), "Bucket")  # no logging, no TLS rule: findings in both packs
    acknowledge(bucket, "AwsSolutions-S1", "Exercises acknowledgement in this test only.")
    add_nag_checks(app)
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    report = json.loads((tmp_path / "validation-report.json").read_text())
    rules = {v["ruleName"] for plugin in report["pluginReports"] for v in plugin["violations"]}
    assert {"AwsSolutions-S10", "NIST.800.53.R5-S3BucketLoggingEnabled"} <= rules
    assert "AwsSolutions-S1" not in rules
