"""The release function (the very file EndpointStack deploys) deciding rollouts.

SageMaker is moto's (in-process): real model packages, approvals and ListModelPackages. CloudFormation is
botocore's Stubber on a real client, so every request is checked against CloudFormation's API model and
every stubbed answer has DescribeStacks' real shape; a call that is not expected fails the test.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from types import SimpleNamespace

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from stacks.constructs.release_automation import PARAMETER_ID, RELEASE_ACTIONS
from stacks.constructs.release_handler import index as release
from stacks.names import COMPONENT_OUTPUT
from tests.stacks.constructs.model_packages import FAKE_AWS_ENV, GROUP, PREFIX, register

STACK_ID = "arn:aws:cloudformation:us-east-1:123456789012:stack/EndpointStack/0b5a2c10-aaaa-bbbb-cccc"
NOW = 1_764_500_000


@pytest.fixture
def sagemaker(monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """moto's SageMaker with the group created, and the environment the function gets from its stack."""
    for name, value in {
        **FAKE_AWS_ENV,
        "MODEL_PACKAGE_GROUP_NAME": GROUP,
        "STACK_ID": STACK_ID,
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        client = boto3.client("sagemaker")
        client.create_model_package_group(ModelPackageGroupName=GROUP)
        yield client


@pytest.fixture
def cloudformation(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    """A real CloudFormation client behind a Stubber; the handler gets it (SageMaker stays moto's)."""
    client = boto3.client("cloudformation", region_name="us-east-1")
    real_client = boto3.client
    monkeypatch.setattr(
        release.boto3,
        "client",
        lambda service, *args, **kwargs: client if service == "cloudformation" else real_client(service),
    )
    with Stubber(client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def _register(client, status: str = "PendingManualApproval") -> str:
    return register(client, status)


def _approve(client, arn: str) -> dict:
    """Approve `arn` and return the EventBridge event SageMaker sends for it."""
    client.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved")
    return _package_event(arn, "Approved")


def _package_event(arn: str, status: str) -> dict:
    return {
        "source": "aws.sagemaker",
        "detail-type": "SageMaker Model Package State Change",
        "detail": {
            "ModelPackageGroupName": GROUP,
            "ModelPackageArn": arn,
            "ModelApprovalStatus": status,
            "ModelPackageVersion": int(arn.rsplit("/", 1)[1]),
        },
    }


def _settled(status: str, token: str) -> dict:
    return {
        "source": "aws.cloudformation",
        "detail-type": "CloudFormation Stack Status Change",
        "resources": [STACK_ID],
        "detail": {
            "stack-id": STACK_ID,
            "status-details": {"status": status, "status-reason": ""},
            "client-request-token": token,
        },
    }


def _expect_describe(
    stubber: Stubber, status: str, serving: str, requested: str = "", component: str | None = None
) -> None:
    stack = {
        "StackId": STACK_ID,
        "StackName": "EndpointStack",
        "StackStatus": status,
        "CreationTime": datetime.datetime(2026, 11, 1, tzinfo=datetime.UTC),
        "Parameters": [
            {"ParameterKey": "BootstrapVersion", "ParameterValue": "/cdk-bootstrap/version"},
            {"ParameterKey": PARAMETER_ID, "ParameterValue": requested},
        ],
        "Outputs": [
            {"OutputKey": "EndpointName", "OutputValue": "jax-llm-endpoint"},
            {"OutputKey": "ModelPackageArn", "OutputValue": serving},
        ],
    }
    if component:  # inference-components mode
        stack["Outputs"].append({"OutputKey": COMPONENT_OUTPUT, "OutputValue": component})
    stubber.add_response("describe_stacks", {"Stacks": [stack]}, {"StackName": STACK_ID})


def _expect_update(stubber: Stubber, target: str) -> None:
    stubber.add_response(
        "update_stack",
        {"StackId": STACK_ID},
        {
            # No RoleARN: the stack keeps the role it was deployed with, and the function needs no PassRole.
            "StackName": STACK_ID,
            "UsePreviousTemplate": True,
            "Capabilities": ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
            "ClientRequestToken": f"release-{target.rsplit('/', 1)[1]}-{NOW}",
            "Parameters": [
                {"ParameterKey": "BootstrapVersion", "UsePreviousValue": True},
                {"ParameterKey": PARAMETER_ID, "ParameterValue": target},
            ],
        },
    )


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(release.time, "time", lambda: NOW + 0.4)


CONTEXT = SimpleNamespace(log_stream_name="2026/11/30/[$LATEST]abc")


def test_approving_a_newer_version_updates_the_stack_to_it(sagemaker, cloudformation, clock):
    serving = _register(sagemaker, "Approved")
    newer = _register(sagemaker)
    _expect_describe(cloudformation, "UPDATE_COMPLETE", serving)
    _expect_update(cloudformation, newer)
    outcome = release.handler(_approve(sagemaker, newer), CONTEXT)
    assert outcome["outcome"] == "started" and outcome["target"] == newer
    assert outcome["token"] == f"release-2-{NOW}"
    assert outcome["detail"] == f"rolling out version 2 (was {serving})"


def test_approving_an_older_version_starts_nothing(sagemaker, cloudformation):
    older = _register(sagemaker)
    serving = _register(sagemaker, "Approved")
    _expect_describe(cloudformation, "UPDATE_COMPLETE", serving)
    outcome = release.handler(_approve(sagemaker, older), CONTEXT)
    assert outcome["outcome"] == "nothing to do"
    assert outcome["detail"] == "the newest Approved version is serving"


def test_a_rejection_starts_nothing_and_calls_nothing(sagemaker, cloudformation):
    serving = _register(sagemaker, "Approved")
    sagemaker.update_model_package(ModelPackageArn=serving, ModelApprovalStatus="Rejected")
    outcome = release.handler(_package_event(serving, "Rejected"), CONTEXT)
    assert outcome == {"outcome": "ignored", "detail": "not an approval in this group", "status": "Rejected"}


def test_another_groups_approval_is_ignored(sagemaker, cloudformation):
    event = _package_event(_register(sagemaker), "Approved")
    event["detail"]["ModelPackageGroupName"] = "someone-elses"
    assert release.handler(event, CONTEXT)["outcome"] == "ignored"


def test_two_approvals_in_a_row_deploy_the_newest_once(sagemaker, cloudformation, clock):
    serving = _register(sagemaker, "Approved")
    second, third = _register(sagemaker), _register(sagemaker)
    first_event, second_event = _approve(sagemaker, second), _approve(sagemaker, third)
    # The first event is decided after both approvals: it rolls out the newest, version 3.
    _expect_describe(cloudformation, "UPDATE_COMPLETE", serving)
    _expect_update(cloudformation, third)
    assert release.handler(first_event, CONTEXT)["target"] == third
    # The second finds that rollout under way.
    _expect_describe(cloudformation, "UPDATE_IN_PROGRESS", serving, requested=third)
    assert release.handler(second_event, CONTEXT)["outcome"] == "deferred"
    # When it completes, version 3 serves: nothing more to do.
    _expect_describe(cloudformation, "UPDATE_COMPLETE", third, requested=third)
    outcome = release.handler(_settled("UPDATE_COMPLETE", f"release-3-{NOW}"), CONTEXT)
    assert outcome["outcome"] == "nothing to do"


def test_an_approval_during_a_rollout_is_rolled_out_when_the_stack_settles(sagemaker, cloudformation, clock):
    _register(sagemaker, "Approved")
    second = _register(sagemaker, "Approved")  # rolling out now
    third = _register(sagemaker)
    _expect_describe(cloudformation, "UPDATE_IN_PROGRESS", "arn:previous", requested=second)
    assert release.handler(_approve(sagemaker, third), CONTEXT)["outcome"] == "deferred"
    _expect_describe(cloudformation, "UPDATE_COMPLETE", second, requested=second)
    _expect_update(cloudformation, third)
    assert release.handler(_settled("UPDATE_COMPLETE", f"release-2-{NOW}"), CONTEXT)["target"] == third


def test_a_rollout_that_rolled_back_is_not_retried(sagemaker, cloudformation):
    serving = _register(sagemaker, "Approved")
    failed = _register(sagemaker, "Approved")
    _expect_describe(cloudformation, "UPDATE_ROLLBACK_COMPLETE", serving, requested=serving)
    outcome = release.handler(_settled("UPDATE_ROLLBACK_COMPLETE", "release-2-1764400000"), CONTEXT)
    assert outcome["outcome"] == "not retried" and outcome["target"] == failed
    assert outcome["detail"].startswith("the rollout of version 2 just rolled back (see the stack events)")


def test_a_newer_approval_after_a_failed_rollout_is_rolled_out(sagemaker, cloudformation, clock):
    serving = _register(sagemaker, "Approved")
    _register(sagemaker, "Approved")  # version 2: its rollout failed
    newest = _register(sagemaker, "Approved")
    _expect_describe(cloudformation, "UPDATE_ROLLBACK_COMPLETE", serving, requested=serving)
    _expect_update(cloudformation, newest)
    outcome = release.handler(_settled("UPDATE_ROLLBACK_COMPLETE", "release-2-1764400000"), CONTEXT)
    assert outcome["target"] == newest


def test_a_stack_stuck_in_a_failed_rollback_is_left_to_a_person(sagemaker, cloudformation):
    serving = _register(sagemaker, "Approved")
    _expect_describe(cloudformation, "UPDATE_ROLLBACK_FAILED", serving)
    outcome = release.handler(_approve(sagemaker, _register(sagemaker)), CONTEXT)
    assert outcome["outcome"] == "blocked"
    assert "UPDATE_ROLLBACK_FAILED" in outcome["detail"]


def test_an_update_started_by_someone_else_in_between_defers(sagemaker, cloudformation, clock):
    serving = _register(sagemaker, "Approved")
    newer = _register(sagemaker)
    _expect_describe(cloudformation, "UPDATE_COMPLETE", serving)
    cloudformation.add_client_error(
        "update_stack",
        "ValidationError",
        http_status_code=400,
        service_message=f"Stack:{STACK_ID} is in UPDATE_IN_PROGRESS state and can not be updated.",
    )
    assert release.handler(_approve(sagemaker, newer), CONTEXT)["outcome"] == "deferred"


def test_a_direct_invocation_rolls_back_to_the_newest_approved_version(sagemaker, cloudformation, clock):
    """`ops rollback` rejects the serving version, then invokes the function: the previous one returns."""
    previous = _register(sagemaker, "Approved")
    serving = _register(sagemaker, "Approved")
    sagemaker.update_model_package(ModelPackageArn=serving, ModelApprovalStatus="Rejected")
    _expect_describe(cloudformation, "UPDATE_COMPLETE", serving, requested=serving)
    _expect_update(cloudformation, previous)
    outcome = release.handler({"reason": "rollback: p90 latency doubled"}, CONTEXT)
    assert outcome["reason"] == "rollback: p90 latency doubled" and outcome["target"] == previous


def test_release_tokens_name_the_version_and_others_do_not():
    assert release.released_version(release.release_token("arn:x/model-package/g/12", NOW)) == 12
    for other in ("", None, "Console-UpdateStack-7f59c3cf", "exec-1234-abcd", "release-x-1"):
        assert release.released_version(other) is None


def test_the_calls_the_function_makes_are_the_actions_its_policy_grants():
    source = release.__loader__.get_source(release.__name__)
    calls = set()
    for line in source.splitlines():
        for client in ("sagemaker.", "cloudformation."):
            if client in line and "(" in line.split(client, 1)[1]:
                name = line.split(client, 1)[1].split("(")[0]
                if name.isidentifier() and name != "client":
                    calls.add((client.rstrip("."), name))
    assert calls == {
        ("sagemaker", "list_model_packages"),
        ("cloudformation", "describe_stacks"),
        ("cloudformation", "update_stack"),
    }
    actions = {
        f"{service}:{boto3.client(service, region_name='us-east-1').meta.method_to_api_mapping[name]}"
        for service, name in calls
    }
    # CloudFormation resolves the stack's SSM-typed BootstrapVersion parameter with the caller's credentials.
    assert actions | {"ssm:GetParameters"} == set(RELEASE_ACTIONS)
    # No iam:PassRole because the update names no RoleARN, on the API's own word (as botocore ships it).
    role_arn = (
        boto3.client("cloudformation", region_name="us-east-1")
        .meta.service_model.operation_model("UpdateStack")
        .input_shape.members["RoleARN"]
        .documentation
    )
    assert (
        "If you don't specify a value, CloudFormation uses the role that was previously associated"
        in role_arn
    )


# --- inference-components mode: the same stack update; the component's rolling update does the rollout ----


def test_in_inference_components_mode_an_approval_updates_the_stack_the_same_way(
    sagemaker, cloudformation, clock
):
    """CloudFormation turns the new Model name into an update of the component, which SageMaker rolls out
    copy batch by copy batch under the same alarms; the function's request is the variant mode's. The newer
    version is registered uncompressed (ModelDataSource): the function reads no model data either way."""
    serving = _register(sagemaker, "Approved")
    newer = register(sagemaker, "PendingManualApproval", PREFIX)
    _expect_describe(cloudformation, "UPDATE_COMPLETE", serving, component="jax-llm-endpoint-model")
    _expect_update(cloudformation, newer)
    outcome = release.handler(_approve(sagemaker, newer), CONTEXT)
    assert outcome["outcome"] == "started" and outcome["target"] == newer


def test_in_inference_components_mode_a_rolled_back_update_is_not_retried(sagemaker, cloudformation):
    serving = _register(sagemaker, "Approved")
    failed = _register(sagemaker, "Approved")
    _expect_describe(
        cloudformation,
        "UPDATE_ROLLBACK_COMPLETE",
        serving,
        requested=failed,
        component="jax-llm-endpoint-model",
    )
    outcome = release.handler(_settled("UPDATE_ROLLBACK_COMPLETE", f"release-2-{NOW}"), CONTEXT)
    assert outcome["outcome"] == "not retried"
