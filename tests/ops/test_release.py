"""`python -m ops release status` and `python -m ops rollback`.

SageMaker is moto's server (real versions, approvals, rejections). CloudFormation's stack events with
ClientRequestTokens and Lambda's Invoke are not emulated by moto (moto runs functions only in Docker), so
those two clients are botocore Stubbers on real clients: every request is checked against the service's
API model and every answer has the real response shape; an unexpected call fails the test.
"""

from __future__ import annotations

import datetime
import io
import json

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from ops import release
from ops.aws import Aws
from stacks.constructs.release_automation import FUNCTION_OUTPUT, PARAMETER_ID
from stacks.names import COMPONENT_OUTPUT

GROUP = "jax-llm-gpt"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/jax-llm:abc"
STACK_ID = "arn:aws:cloudformation:us-east-1:123456789012:stack/EndpointStack/0b5a2c10"
FUNCTION = "EndpointStack-ReleaseHandlerC0803ED1-AbCdEf"


@pytest.fixture
def stubbed(monkeypatch: pytest.MonkeyPatch, moto: str):
    """CloudFormation and Lambda clients behind Stubbers, handed to the CLI; SageMaker stays moto's."""
    clients = {s: boto3.client(s, region_name="us-east-1") for s in ("cloudformation", "lambda")}
    stubbers = {s: Stubber(c) for s, c in clients.items()}
    real = Aws.client
    monkeypatch.setattr(Aws, "client", lambda self, service: clients.get(service) or real(self, service))
    for stubber in stubbers.values():
        stubber.activate()
    yield stubbers
    for stubber in stubbers.values():
        stubber.assert_no_pending_responses()
        stubber.deactivate()


@pytest.fixture
def versions(moto: str) -> list[str]:
    """Versions 1-3 in the group, all pending."""
    sagemaker = boto3.client("sagemaker", endpoint_url=moto)
    sagemaker.create_model_package_group(ModelPackageGroupName=GROUP)
    spec = {
        "Containers": [{"Image": IMAGE, "ModelDataUrl": "s3://b/model.tar.gz"}],
        "SupportedContentTypes": ["application/json"],
        "SupportedResponseMIMETypes": ["application/json"],
    }
    return [
        sagemaker.create_model_package(
            ModelPackageGroupName=GROUP,
            InferenceSpecification=spec,
            ModelApprovalStatus="PendingManualApproval",
        )["ModelPackageArn"]
        for _ in range(3)
    ]


def _set(moto: str, arn: str, status: str) -> None:
    boto3.client("sagemaker", endpoint_url=moto).update_model_package(
        ModelPackageArn=arn, ModelApprovalStatus=status
    )


def _package(moto: str, arn: str) -> dict:
    return boto3.client("sagemaker", endpoint_url=moto).describe_model_package(ModelPackageName=arn)


def _stack(
    stubber: Stubber,
    status: str,
    serving: str,
    requested: str = "",
    pinned: bool = False,
    component: str | None = None,
) -> None:
    outputs = [{"OutputKey": "ModelPackageArn", "OutputValue": serving}]
    if component:  # inference-components mode
        outputs.append({"OutputKey": COMPONENT_OUTPUT, "OutputValue": component})
    if not pinned:
        outputs.append({"OutputKey": FUNCTION_OUTPUT, "OutputValue": FUNCTION})
    stack = {
        "StackId": STACK_ID,
        "StackName": "EndpointStack",
        "StackStatus": status,
        "Outputs": outputs,
        "CreationTime": datetime.datetime(2026, 11, 1, tzinfo=datetime.UTC),
        "Parameters": [] if pinned else [{"ParameterKey": PARAMETER_ID, "ParameterValue": requested}],
    }
    stubber.add_response("describe_stacks", {"Stacks": [stack]}, {"StackName": "EndpointStack"})


def _event(token: str, minute: int, logical_id: str, status: str, reason: str = "") -> dict:
    kind = "AWS::CloudFormation::Stack" if logical_id == "EndpointStack" else "AWS::SageMaker::Endpoint"
    event = {
        "StackId": STACK_ID,
        "EventId": f"{token}-{minute}-{status}",
        "StackName": "EndpointStack",
        "LogicalResourceId": logical_id,
        "ResourceType": kind,
        "ResourceStatus": status,
        "Timestamp": datetime.datetime(2026, 11, 30, 9, minute, tzinfo=datetime.UTC),
        "ClientRequestToken": token,
    }
    return {**event, "ResourceStatusReason": reason} if reason else event


# Newest first, as DescribeStackEvents returns them: version 4 rolling out, a cdk deploy, version 3
# rolled back by its alarm, version 2 rolled out.
EVENTS = [
    _event("release-4-1764496000", 50, "EndpointStack", "UPDATE_IN_PROGRESS"),
    _event("exec-9f1c2d", 40, "EndpointStack", "UPDATE_COMPLETE"),
    _event("exec-9f1c2d", 39, "EndpointStack", "UPDATE_IN_PROGRESS"),
    _event("release-3-1764493000", 30, "EndpointStack", "UPDATE_ROLLBACK_COMPLETE"),
    _event(
        "release-3-1764493000",
        28,
        "EndpointStack",
        "UPDATE_ROLLBACK_IN_PROGRESS",
        "The following resource(s) failed to update: [ServingEndpoint].",
    ),
    _event(
        "release-3-1764493000",
        27,
        "ServingEndpoint",
        "UPDATE_FAILED",
        "Endpoint update rolled back: alarm jax-llm-endpoint-5xx went to ALARM",
    ),
    _event("release-3-1764493000", 10, "EndpointStack", "UPDATE_IN_PROGRESS"),
    _event("release-2-1764490000", 5, "EndpointStack", "UPDATE_COMPLETE"),
    _event("release-2-1764490000", 4, "EndpointStack", "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS"),
    _event("release-2-1764490000", 1, "EndpointStack", "UPDATE_IN_PROGRESS"),
]


def test_status_shows_serving_rolling_out_and_the_last_rollouts_with_why(cli, stubbed, versions):
    cloudformation = stubbed["cloudformation"]
    _stack(cloudformation, "UPDATE_IN_PROGRESS", serving=versions[1], requested=versions[2])
    cloudformation.add_response(
        "describe_stack_events", {"StackEvents": EVENTS}, {"StackName": "EndpointStack"}
    )
    result = cli("release", "status")
    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        f"Serving:      version 2 ({versions[1]})",
        f"Rolling out:  version 3 ({versions[2]}) (stack UPDATE_IN_PROGRESS)",
        f"Stack:        UPDATE_IN_PROGRESS; approving a version rolls it out (function {FUNCTION})",
        "Last rollouts:",
        "  version 4    2026-11-30 09:50 UTC  in progress",
        "  version 3    2026-11-30 09:10 UTC  rolled back: ServingEndpoint: Endpoint update rolled back: "
        "alarm jax-llm-endpoint-5xx went to ALARM",
        "  version 2    2026-11-30 09:01 UTC  rolled out",
    ]


def test_status_stops_reading_events_after_the_last_rollout_asked_for(cli, stubbed, versions):
    cloudformation = stubbed["cloudformation"]
    _stack(cloudformation, "UPDATE_COMPLETE", serving=versions[1], requested=versions[1])
    cloudformation.add_response(
        "describe_stack_events",
        {"StackEvents": EVENTS[:5], "NextToken": "p2"},
        {"StackName": "EndpointStack"},
    )
    # No second page is stubbed: asking for it would fail the test.
    result = cli("release", "status", "--last", "1")
    assert result.code == 0, result.err
    assert result.out.splitlines()[1:] == [
        "Rolling out:  none",
        f"Stack:        UPDATE_COMPLETE; approving a version rolls it out (function {FUNCTION})",
        "Last rollouts:",
        "  version 4    2026-11-30 09:50 UTC  in progress",
    ]


def test_status_of_a_pinned_stack_says_approvals_do_not_move_it(cli, stubbed, versions):
    cloudformation = stubbed["cloudformation"]
    _stack(cloudformation, "UPDATE_COMPLETE", serving=versions[0], pinned=True)
    cloudformation.add_response("describe_stack_events", {"StackEvents": []}, {"StackName": "EndpointStack"})
    result = cli("release", "status")
    assert "pinned with -c modelPackageArn: approvals are not rolled out" in result.out
    assert result.out.splitlines()[-1] == "Last rollouts: none yet"


def test_rollback_rejects_the_serving_version_and_has_the_release_function_roll_out_the_previous(
    cli, moto, stubbed, versions
):
    _set(moto, versions[0], "Approved")
    _set(moto, versions[1], "Approved")  # serving
    _stack(stubbed["cloudformation"], "UPDATE_COMPLETE", serving=versions[1], requested=versions[1])
    outcome = {"outcome": "started", "detail": f"rolling out version 1 (was {versions[1]})"}
    body = json.dumps(outcome).encode()
    stubbed["lambda"].add_response(
        "invoke",
        {"StatusCode": 200, "Payload": StreamingBody(io.BytesIO(body), len(body))},
        {
            "FunctionName": FUNCTION,
            "Payload": json.dumps({"reason": "rollback of version 2: p90 latency doubled"}).encode(),
        },
    )
    result = cli("rollback", "--reason", "p90 latency doubled", "--group", GROUP)
    assert result.code == 0, result.err
    assert result.out.startswith(f"Rolling back to version 1 ({versions[0]}): started, rolling out version 1")
    package = _package(moto, versions[1])
    assert package["ModelApprovalStatus"] == "Rejected"
    assert package["ApprovalDescription"] == "rolled back: p90 latency doubled"


@pytest.mark.parametrize(
    "approved, stack_status, pinned, message",
    [
        ((1,), "UPDATE_COMPLETE", False, "No Approved version older than the serving version 2"),
        ((0, 1, 2), "UPDATE_COMPLETE", False, "Version 3 is Approved and newer than the serving version 2"),
        ((0, 1), "UPDATE_IN_PROGRESS", False, "is UPDATE_IN_PROGRESS: wait for it to settle"),
        ((0, 1), "UPDATE_COMPLETE", True, "serves a pinned version"),
    ],
)
def test_rollback_refuses_and_changes_nothing(
    cli, moto, stubbed, versions, approved, stack_status, pinned, message
):
    for index in approved:
        _set(moto, versions[index], "Approved")
    _stack(stubbed["cloudformation"], stack_status, serving=versions[1], pinned=pinned)
    result = cli("rollback", "--group", GROUP)
    assert result.code == 1 and message in result.err
    package = _package(moto, versions[1])
    assert package["ModelApprovalStatus"] == "Approved"


def test_the_output_names_are_the_stacks():
    assert release.FUNCTION_OUTPUT == FUNCTION_OUTPUT and release.PARAMETER == PARAMETER_ID


@pytest.mark.parametrize(
    "current, desired, line",
    [
        (2, 2, "Component:    jax-llm-endpoint-model InService, 2 of 2 copies"),
        (
            0,
            0,
            "Component:    jax-llm-endpoint-model InService, scaled to zero: the first request fails and "
            "starts a copy (minutes), retry after it",
        ),
    ],
)
def test_status_in_inference_components_mode_shows_the_component_and_its_copies(
    cli, stubbed, versions, monkeypatch, current, desired, line
):
    """DescribeInferenceComponent is not emulated by moto: a Stubber on a real client checks the request and
    answers in the real response shape."""
    component = "jax-llm-endpoint-model"
    sagemaker = boto3.client("sagemaker", region_name="us-east-1")
    real = Aws.client
    monkeypatch.setattr(
        Aws, "client", lambda self, service: sagemaker if service == "sagemaker" else real(self, service)
    )
    cloudformation = stubbed["cloudformation"]
    _stack(cloudformation, "UPDATE_COMPLETE", serving=versions[1], requested=versions[1], component=component)
    cloudformation.add_response("describe_stack_events", {"StackEvents": []}, {"StackName": "EndpointStack"})
    now = datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)
    with Stubber(sagemaker) as stubber:
        stubber.add_response(
            "describe_inference_component",
            {
                "InferenceComponentName": component,
                "InferenceComponentArn": f"arn:aws:sagemaker:us-east-1:"
                f"123456789012:inference-component/{component}",
                "EndpointName": "jax-llm-endpoint",
                "EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/jax-llm-endpoint",
                "VariantName": "primary",
                "InferenceComponentStatus": "InService",
                "CreationTime": now,
                "LastModifiedTime": now,
                "RuntimeConfig": {"DesiredCopyCount": desired, "CurrentCopyCount": current},
            },
            {"InferenceComponentName": component},
        )
        result = cli("release", "status")
        stubber.assert_no_pending_responses()
    assert result.code == 0, result.err
    assert result.out.splitlines()[3] == line
