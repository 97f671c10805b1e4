"""Release function: rolls the group's newest Approved model version out by updating EndpointStack.

It runs on three kinds of event and does the same thing for each (``reconcile``):

* a model package in the group turned Approved (EventBridge, ``aws.sagemaker``);
* EndpointStack settled after its creation or an update (EventBridge, ``aws.cloudformation``): an approval
  that came while the stack was busy is rolled out now;
* a direct invocation (``python -m ops rollback``), after the serving version was rejected.

``reconcile`` compares the newest Approved version with the one the stack serves (its output) and, when they
differ and the stack is idle, calls UpdateStack with the previous template and only the
``RequestedModelPackageArn`` parameter changed, so CloudFormation replaces the Model and endpoint config and
the endpoint's blue/green update (traffic shifting, alarm rollback) does the rest. The stack stays the one
source of truth: nothing is changed behind its back. The update's ClientRequestToken
``release-<version>-<time>`` marks it in the stack events, where ``ops release status`` finds it. A version
whose rollout just rolled back is not retried.
"""

import json
import os
import time

import boto3
from botocore.exceptions import ClientError

PARAMETER = "RequestedModelPackageArn"  # the stack parameter the update changes
SERVING_OUTPUT = "ModelPackageArn"  # the stack output naming the version the endpoint serves
# In inference-components mode, the stack output naming the component (absent in variant mode).
TOKEN_PREFIX = "release-"
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"]
# Statuses a stack can be updated from; any other one that is not *_IN_PROGRESS needs a person.
UPDATABLE = (
    "CREATE_COMPLETE",
    "UPDATE_COMPLETE",
    "UPDATE_ROLLBACK_COMPLETE",
    "IMPORT_COMPLETE",
    "IMPORT_ROLLBACK_COMPLETE",
)


def version_of(arn):
    """The version number at the end of a versioned model package ARN."""
    return int(arn.rsplit("/", 1)[1])


def release_token(arn, now):
    """The ClientRequestToken of a rollout: release-<version>-<unix time>."""
    return f"{TOKEN_PREFIX}{version_of(arn)}-{int(now)}"


def released_version(token):
    """The version a release token rolled out, or None for another operation's token."""
    parts = (token or "").split("-")
    if len(parts) == 3 and f"{parts[0]}-" == TOKEN_PREFIX and parts[1].isdigit():
        return int(parts[1])
    return None


def newest_approved(sagemaker, group):
    """ARN of the newest Approved version in ``group``, or None."""
    summaries = sagemaker.list_model_packages(
        ModelPackageGroupName=group,
        ModelApprovalStatus="Approved",
        SortBy="CreationTime",
        SortOrder="Descending",
        MaxResults=1,
    )["ModelPackageSummaryList"]
    return summaries[0]["ModelPackageArn"] if summaries else None


def reconcile(sagemaker, cloudformation, *, stack, group, reason, failed_version=None, now=None):
    """Start a rollout of the newest Approved version when the stack serves another one; says what it did."""
    described = cloudformation.describe_stacks(StackName=stack)["Stacks"][0]
    status = described["StackStatus"]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    serving = outputs.get(SERVING_OUTPUT)
    result = {"reason": reason, "stack_status": status, "serving": serving}
    if status.endswith("_IN_PROGRESS"):
        return {
            **result,
            "outcome": "deferred",
            "detail": "the stack is being updated; its next settled state starts this again",
        }
    if status not in UPDATABLE:
        return {
            **result,
            "outcome": "blocked",
            "detail": f"the stack is {status}: fix it (e.g. continue the rollback) before a release",
        }
    target = newest_approved(sagemaker, group)
    result["target"] = target
    if target is None:
        return {**result, "outcome": "nothing to do", "detail": f"no Approved version in {group}"}
    if target == serving:
        return {**result, "outcome": "nothing to do", "detail": "the newest Approved version is serving"}
    if failed_version is not None and version_of(target) == failed_version:
        return {
            **result,
            "outcome": "not retried",
            "detail": f"the rollout of version {failed_version} just rolled back (see the stack events); "
            "approve a newer version, or reject this one to go back",
        }
    token = release_token(target, time.time() if now is None else now)
    parameters = [
        {"ParameterKey": p["ParameterKey"], "UsePreviousValue": True}
        for p in described.get("Parameters", [])
        if p["ParameterKey"] != PARAMETER
    ]
    parameters.append({"ParameterKey": PARAMETER, "ParameterValue": target})
    try:
        # No RoleARN: CloudFormation uses the role the stack was deployed with (CDK's deploy role), and
        # needs no iam:PassRole of the caller for it (UpdateStack's RoleARN, docs/stacks.md).
        cloudformation.update_stack(
            StackName=stack,
            UsePreviousTemplate=True,
            Parameters=parameters,
            Capabilities=CAPABILITIES,
            ClientRequestToken=token,
        )
    except ClientError as error:
        message = error.response["Error"].get("Message", "")
        if "IN_PROGRESS state" in message:  # someone else's update started in between
            return {**result, "outcome": "deferred", "detail": message}
        raise
    return {
        **result,
        "outcome": "started",
        "token": token,
        "detail": f"rolling out version {version_of(target)} (was {serving})",
    }


def what_happened(event, group):
    """(reason, failed version) for an event that may call for a rollout, or None for one to ignore."""
    detail = event.get("detail") or {}
    if event.get("source") == "aws.sagemaker":
        if detail.get("ModelPackageGroupName") != group or detail.get("ModelApprovalStatus") != "Approved":
            return None
        return f"version {detail.get('ModelPackageVersion')} approved", None
    if event.get("source") == "aws.cloudformation":
        status = (detail.get("status-details") or {}).get("status", "")
        failed = released_version(detail.get("client-request-token"))
        return f"stack settled: {status}", failed if status == "UPDATE_ROLLBACK_COMPLETE" else None
    return event.get("reason") or "invoked", None


def handler(event, context):
    """EventBridge (or direct) event in; the outcome is logged as one JSON line and returned."""
    group = os.environ["MODEL_PACKAGE_GROUP_NAME"]
    happened = what_happened(event, group)
    if happened is None:
        outcome = {
            "outcome": "ignored",
            "detail": "not an approval in this group",
            "status": (event.get("detail") or {}).get("ModelApprovalStatus"),
        }
    else:
        reason, failed = happened
        outcome = reconcile(
            boto3.client("sagemaker"),
            boto3.client("cloudformation"),
            stack=os.environ["STACK_ID"],
            group=group,
            reason=reason,
            failed_version=failed,
        )
    print(json.dumps(outcome))
    return outcome
