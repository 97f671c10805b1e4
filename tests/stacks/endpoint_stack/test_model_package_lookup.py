"""EndpointStack's model version: looked up at deploy time (the lookup custom resource and its handler), or
pinned by modelPackageArn."""

from __future__ import annotations

import json
from pathlib import Path

from stacks.constructs.model_package_lookup import DESCRIBE_ACTION, HANDLER_DIR, LOOKUP_ACTION, RESOURCE_TYPE
from tests.stacks.endpoint_stack.templates import (
    PINNED_ARN,
    lookup_function,
    one_resource,
    resource_properties,
)


def test_model_serves_the_package_the_lookup_finds(default):
    lookup_id, _ = one_resource(default, RESOURCE_TYPE)
    container = resource_properties(default, "AWS::SageMaker::Model")["PrimaryContainer"]
    assert container == {"ModelPackageName": {"Fn::GetAtt": [lookup_id, "ModelPackageArn"]}}


def test_lookup_asks_for_the_group_and_its_handler_is_the_tested_file(synthesized_app, default, settings):
    _, lookup = one_resource(default, RESOURCE_TYPE)
    function_id, function = lookup_function(default)
    assert lookup["Properties"] == {
        "ServiceToken": {"Fn::GetAtt": [function_id, "Arn"]},
        "ModelPackageGroupName": settings.registry.model_package_group_name,
        "LookupToken": "",
        "Requested": {"Ref": "RequestedModelPackageArn"},  # set by the release function on approval
    }
    asset = Path(synthesized_app.outdir) / function["Metadata"]["aws:asset:path"]
    assert sorted(p.name for p in asset.iterdir()) == ["index.py"]
    assert (asset / "index.py").read_text() == (HANDLER_DIR / "index.py").read_text()
    assert function["Properties"]["Handler"] == "index.handler"
    assert function["Properties"]["Runtime"].startswith("python3.")


def test_lookup_handler_may_read_the_groups_packages_and_write_its_logs_only(default, settings):
    function_id, function = lookup_function(default)
    role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
    ((policy_id, policy),) = [
        (k, v)
        for k, v in default.find_resources("AWS::IAM::ManagedPolicy").items()
        if v["Properties"]["Roles"] == [{"Ref": role_id}]
    ]
    log_group_id = function["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
    statements = {s["Sid"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"]}
    assert statements["ListModelPackages"] == {
        "Sid": "ListModelPackages",
        "Effect": "Allow",
        "Action": LOOKUP_ACTION,
        "Resource": "*",
    }
    assert statements["HandlerLogs"]["Action"] == ["logs:CreateLogStream", "logs:PutLogEvents"]
    assert statements["HandlerLogs"]["Resource"] == {"Fn::GetAtt": [log_group_id, "Arn"]}
    group = settings.registry.model_package_group_name.lower()
    assert statements["DescribeGroupPackages"]["Action"] == DESCRIBE_ACTION
    described = json.dumps(statements["DescribeGroupPackages"]["Resource"])
    assert described.endswith(f':model-package/{group}/*"]]}}')
    assert set(statements) == {"ListModelPackages", "DescribeGroupPackages", "HandlerLogs"}
    # No managed AWS policies and no inline policies on the handler's role.
    role = default.to_json()["Resources"][role_id]["Properties"]
    assert "ManagedPolicyArns" not in role and "Policies" not in role
    # The lookup runs only once its permissions are attached.
    assert one_resource(default, RESOURCE_TYPE)[1]["DependsOn"] == [policy_id]


def test_handler_logs_are_encrypted_and_retained(default, settings):
    log_groups = default.find_resources("AWS::Logs::LogGroup").values()
    assert len(log_groups) == 3  # the lookup's, the release function's and the endpoint's
    for log_group in log_groups:
        assert log_group["Properties"]["RetentionInDays"] == settings.storage.log_retention_days
        assert "KmsKeyId" in log_group["Properties"]


def test_with_removal_policy_destroy_the_endpoint_log_group_goes_with_the_stack(pinned):
    template = pinned.templates["EndpointStack"]
    (log_group,) = template.find_resources(
        "AWS::Logs::LogGroup", {"Properties": {"LogGroupName": "/aws/sagemaker/Endpoints/jax-llm-endpoint"}}
    ).values()
    assert (log_group["DeletionPolicy"], log_group["UpdateReplacePolicy"]) == ("Delete", "Delete")


def test_pinned_arn_is_served_without_a_lookup(pinned):
    template = pinned.templates["EndpointStack"]
    assert template.find_resources(RESOURCE_TYPE) == {}
    assert template.find_resources("AWS::Lambda::Function") == {}
    assert resource_properties(template, "AWS::SageMaker::Model")["PrimaryContainer"] == {
        "ModelPackageName": PINNED_ARN,
        "Environment": {"JAX_LLM_MAX_BATCH": "48"},  # endpointDecodeSlots reaches the container
    }
    assert pinned.template_json["EndpointStack"]["Outputs"]["ModelPackageArn"]["Value"] == PINNED_ARN
