"""EndpointStack's release path: the parameter, the two rules, the release function and what it may call.

The function's calls (``RELEASE_ACTIONS``, checked against its source in test_release_handler.py) are
evaluated against its synthesized role policy as CloudFormation would resolve it, with the nearest wrong
calls denied: only this stack, only as the CDK deploy role, and nothing that changes SageMaker directly.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stacks.constructs.release_automation import (
    APPROVAL_EVENT,
    FUNCTION_OUTPUT,
    HANDLER_DIR,
    PARAMETER_ID,
    RELEASE_ACTIONS,
    SETTLED_STATUSES,
    STACK_EVENT,
)
from tests.stacks.cfn_values import ACCOUNT, PSEUDO, REGION, TemplateValues, resources_of_type
from tests.stacks.iam_evaluation import RolePolicies

THIS_STACK = PSEUDO["AWS::StackId"]
DEPLOY_ROLE = f"arn:aws:iam::{ACCOUNT}:role/cdk-hnb659fds-cfn-exec-role-{ACCOUNT}-{REGION}"
BOOTSTRAP_VERSION = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/cdk-bootstrap/hnb659fds/version"
TO_CLOUDFORMATION = {"iam:PassedToService": "cloudformation.amazonaws.com"}
ARN = "arn:aws:sagemaker:us-east-1:123456789012:model-package/jax-llm-gpt/7"


@pytest.fixture(scope="module")
def template(synthesized_app) -> dict:
    return synthesized_app.template_json["EndpointStack"]


@pytest.fixture(scope="module")
def function(template) -> tuple[str, dict]:
    """(logical id, resource) of the release function: the one the rules target."""
    (rule, *_) = resources_of_type(template, "AWS::Events::Rule").values()
    function_id = rule["Properties"]["Targets"][0]["Arn"]["Fn::GetAtt"][0]
    return function_id, template["Resources"][function_id]


def test_the_parameter_is_empty_by_default_and_takes_only_a_versioned_package_arn(template):
    parameter = template["Parameters"][PARAMETER_ID]
    assert parameter["Type"] == "String" and parameter["Default"] == ""
    pattern = re.compile(parameter["AllowedPattern"])
    assert pattern.fullmatch("") and pattern.fullmatch(ARN)
    for wrong in ("jax-llm-gpt/7", ARN.rsplit("/", 1)[0], ARN + "; rm -rf /"):
        assert not pattern.fullmatch(wrong), wrong


def test_approvals_in_the_group_and_this_stack_settling_start_it(template, function, settings_group):
    function_id, _ = function
    rules = {
        r["Properties"]["EventPattern"]["source"][0]: r["Properties"]
        for r in resources_of_type(template, "AWS::Events::Rule").values()
    }
    assert rules["aws.sagemaker"]["EventPattern"] == {
        "source": ["aws.sagemaker"],
        "detail-type": [APPROVAL_EVENT],
        "detail": {"ModelPackageGroupName": [settings_group], "ModelApprovalStatus": ["Approved"]},
    }
    assert rules["aws.cloudformation"]["EventPattern"] == {
        "source": ["aws.cloudformation"],
        "detail-type": [STACK_EVENT],
        "resources": [{"Ref": "AWS::StackId"}],
        "detail": {"status-details": {"status": SETTLED_STATUSES}},
    }
    assert len(rules) == 2
    for rule in rules.values():
        (target,) = rule["Targets"]
        assert target["Arn"] == {"Fn::GetAtt": [function_id, "Arn"]}
        assert target["RetryPolicy"] == {"MaximumEventAgeInSeconds": 3600, "MaximumRetryAttempts": 2}
    permissions = resources_of_type(template, "AWS::Lambda::Permission").values()
    rule_arns = {
        str(p["Properties"]["SourceArn"])
        for p in permissions
        if p["Properties"]["Principal"] == "events.amazonaws.com"
    }
    assert len(rule_arns) == 2  # each rule may invoke it, nothing else may


@pytest.fixture(scope="module")
def settings_group(synthesized_app) -> str:
    from stacks.settings import Settings

    return Settings.from_context(synthesized_app.app).registry.model_package_group_name


def test_the_function_runs_one_at_a_time_knows_its_stack_and_is_the_tested_file(
    synthesized_app, template, function, settings_group
):
    function_id, resource = function
    properties = TemplateValues(template).resolve(resource["Properties"])
    assert properties["ReservedConcurrentExecutions"] == 1
    assert properties["Environment"]["Variables"] == {
        "MODEL_PACKAGE_GROUP_NAME": settings_group,
        "STACK_ID": THIS_STACK,
    }
    assert "KmsKeyArn" in resource["Properties"]  # the environment is encrypted with the project key
    assert properties["Handler"] == "index.handler"
    asset = Path(synthesized_app.outdir) / resource["Metadata"]["aws:asset:path"]
    assert sorted(p.name for p in asset.iterdir()) == ["index.py"]
    assert (asset / "index.py").read_text() == (HANDLER_DIR / "index.py").read_text()
    assert template["Outputs"][FUNCTION_OUTPUT]["Value"] == {"Ref": function_id}


def test_the_function_may_update_only_this_stack_as_the_deploy_role(template, function):
    _, resource = function
    values = TemplateValues(template)
    role_id = resource["Properties"]["Role"]["Fn::GetAtt"][0]
    policies = RolePolicies.of(template, role_id)
    log_group = values.resolve(resource["Properties"]["LoggingConfig"]["LogGroup"])
    log_stream = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{log_group}:log-stream:2026/11/30/[$LATEST]abc"
    needed = [
        ("sagemaker:ListModelPackages", "*", {}),
        ("cloudformation:DescribeStacks", THIS_STACK, {}),
        ("cloudformation:UpdateStack", THIS_STACK, {}),
        ("ssm:GetParameters", BOOTSTRAP_VERSION, {}),
        ("logs:CreateLogStream", log_stream, {}),
        ("logs:PutLogEvents", log_stream, {}),
    ]
    assert [c for c in needed if not policies.allows(*c)] == []
    other_stack = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/TrainingStack/1234"
    package = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/jax-llm-gpt/7"
    must_deny = [
        ("cloudformation:UpdateStack", other_stack, {}),
        ("cloudformation:DeleteStack", THIS_STACK, {}),
        ("cloudformation:ExecuteChangeSet", THIS_STACK, {}),
        # No role to pass: UpdateStack without RoleARN keeps the stack's own (CDK's deploy role).
        ("iam:PassRole", DEPLOY_ROLE, TO_CLOUDFORMATION),
        ("iam:PassRole", DEPLOY_ROLE, {}),
        ("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/jax-llm-execution", TO_CLOUDFORMATION),
        # Nothing behind CloudFormation's back: no direct endpoint, model or approval change.
        ("sagemaker:UpdateEndpoint", f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/jax-llm-endpoint", {}),
        ("sagemaker:CreateModel", f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model/x", {}),
        ("sagemaker:UpdateModelPackage", package, {}),
        ("ssm:GetParameters", f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/team/database-password", {}),
    ]
    assert [c for c in must_deny if policies.allows(*c)] == []
    # The function's calls (checked against its source in test_release_handler.py) and its logs; the key
    # decrypts its environment.
    logs = {"logs:CreateLogStream", "logs:PutLogEvents"}
    assert policies.actions() - {"kms:Decrypt"} == {*RELEASE_ACTIONS, *logs}


def test_a_pinned_version_has_no_release_path(synth_app):
    pinned = synth_app({"modelPackageArn": ARN}).template_json["EndpointStack"]
    assert resources_of_type(pinned, "AWS::Events::Rule") == {}
    assert PARAMETER_ID not in pinned.get("Parameters", {})
    assert FUNCTION_OUTPUT not in pinned["Outputs"]
