"""Releases from a laptop: which model version serves, which is rolling out, the last rollouts; rollback.

Both serving modes release the same way (an update of EndpointStack): in variant mode the endpoint's
blue/green update rolls the version out, in inference-components mode the component's rolling update does;
for the latter the status also shows the component's copies (DescribeInferenceComponent), zero when it has
scaled to zero.

Everything is read from EndpointStack itself: its ``ModelPackageArn`` output (serving), its
``RequestedModelPackageArn`` parameter (what the release function asked for), and its stack events, where
each rollout is the update whose ClientRequestToken is ``release-<version>-<time>`` (the release function's
``release_token``), with CloudFormation's own reason when it rolled back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

from ops import model_registry
from ops.aws import Aws
from ops.errors import OpsError, not_found_as
from stacks.constructs.release_handler.index import PARAMETER, SERVING_OUTPUT, released_version, version_of
from stacks.names import COMPONENT_OUTPUT

FUNCTION_OUTPUT = "ReleaseFunctionName"  # EndpointStack's output naming the release function
STACK_RESOURCE = "AWS::CloudFormation::Stack"
OUTCOMES = {
    "UPDATE_COMPLETE": "rolled out",
    "UPDATE_ROLLBACK_COMPLETE": "rolled back",
    "UPDATE_IN_PROGRESS": "in progress",
    "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS": "finishing",
    "UPDATE_ROLLBACK_IN_PROGRESS": "rolling back",
    "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS": "rolling back",
}


@dataclass
class Rollout:
    """One release update of the stack, from its stack events."""

    version: int
    token: str
    started: datetime
    outcome: str  # rolled out, rolled back, in progress, ... (or the stack status)
    reason: str = ""  # why it rolled back: the first resource that failed, with CloudFormation's reason


@dataclass
class Component:
    """The inference component serving in inference-components mode, as DescribeInferenceComponent says."""

    name: str
    status: str  # InService, Creating, Updating, Failed, Deleting
    copies: int  # running now (0: scaled to zero)
    desired_copies: int


@dataclass
class ReleaseStatus:
    """What EndpointStack serves and requests, whether approvals roll out, and its last rollouts."""

    stack_status: str
    serving: str | None
    requested: str | None
    function: str | None  # the release function; None when the stack is pinned (-c modelPackageArn)
    rollouts: list[Rollout] = field(default_factory=list)
    component: Component | None = None  # inference-components mode: the component serving the version

    @property
    def rolling_out(self) -> str | None:
        """The version being rolled out now, if any."""
        busy = self.stack_status.endswith("_IN_PROGRESS")
        return self.requested if busy and self.requested and self.requested != self.serving else None


def release_status(aws: Aws, stack_name: str, limit: int = 5) -> ReleaseStatus:
    """EndpointStack's release state and its last ``limit`` rollouts, newest first."""
    cloudformation = aws.client("cloudformation")
    with not_found_as(
        f"Stack {stack_name!r} is not deployed in this account and region: run `cdk deploy {stack_name}`."
    ):
        stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    parameters = {p["ParameterKey"]: p.get("ParameterValue") for p in stack.get("Parameters", [])}
    component = outputs.get(COMPONENT_OUTPUT)
    return ReleaseStatus(
        stack_status=stack["StackStatus"],
        serving=outputs.get(SERVING_OUTPUT),
        requested=parameters.get(PARAMETER) or None,
        function=outputs.get(FUNCTION_OUTPUT),
        rollouts=_rollouts(cloudformation, stack_name, limit),
        component=_component(aws, component) if component else None,
    )


def _component(aws: Aws, name: str) -> Component:
    """The inference component's status and copies."""
    with not_found_as(
        f"Inference component {name!r} (EndpointStack's output {COMPONENT_OUTPUT}) does not "
        "exist: the stack's last update may have failed; see its events."
    ):
        described = aws.client("sagemaker").describe_inference_component(InferenceComponentName=name)
    runtime = described.get("RuntimeConfig") or {}
    return Component(
        name=name,
        status=described["InferenceComponentStatus"],
        copies=runtime.get("CurrentCopyCount", 0),
        desired_copies=runtime.get("DesiredCopyCount", 0),
    )


def _rollouts(cloudformation, stack_name: str, limit: int) -> list[Rollout]:
    """The last ``limit`` release updates. Stack events come newest first and one operation's events are
    contiguous (CloudFormation runs one at a time), so reading stops at the first event of one too many."""
    events: dict[str, list[dict]] = {}
    if limit == 0:
        return []
    for page in cloudformation.get_paginator("describe_stack_events").paginate(StackName=stack_name):
        for event in page["StackEvents"]:
            token = event.get("ClientRequestToken")
            if released_version(token) is None:
                continue
            if token not in events and len(events) == limit:
                return [_rollout(t, e) for t, e in events.items()]
            events.setdefault(token, []).append(event)
    return [_rollout(t, e) for t, e in events.items()]


def _rollout(token: str, events: list[dict]) -> Rollout:
    """One rollout from its events (newest first)."""
    stack_events = [e for e in events if e["ResourceType"] == STACK_RESOURCE]
    status = stack_events[0]["ResourceStatus"]
    failures = [
        e for e in events if e["ResourceType"] != STACK_RESOURCE and e["ResourceStatus"].endswith("_FAILED")
    ]
    reason = ""
    if failures:  # the first resource that failed says why; the others fail because of it
        first = failures[-1]
        reason = f"{first['LogicalResourceId']}: {first.get('ResourceStatusReason', '')}"
    elif status.startswith("UPDATE_ROLLBACK"):
        reason = next(
            (
                e.get("ResourceStatusReason", "")
                for e in reversed(stack_events)
                if e["ResourceStatus"] == "UPDATE_ROLLBACK_IN_PROGRESS"
            ),
            "",
        )
    return Rollout(
        version=released_version(token),
        token=token,
        started=stack_events[-1]["Timestamp"],
        outcome=OUTCOMES.get(status, status),
        reason=reason,
    )


def rollback(aws: Aws, stack_name: str, group: str, reason: str) -> tuple[model_registry.ModelVersion, dict]:
    """Reject the serving version and have the release function roll out the newest one still Approved.

    Returns (the version rolled back to, the function's outcome). Refuses, changing nothing, when the stack
    is pinned or busy, or when no older Approved version exists, or a newer one does (its rollout failed:
    rejecting the serving version would roll that one out instead)."""
    status = release_status(aws, stack_name, limit=0)
    if status.function is None:
        raise OpsError(
            f"Stack {stack_name!r} serves a pinned version (cdk deploy -c modelPackageArn=...), "
            "so approvals do not move it: deploy the previous version's ARN the same way."
        )
    if status.stack_status.endswith("_IN_PROGRESS"):
        raise OpsError(
            f"Stack {stack_name!r} is {status.stack_status}: wait for it to settle "
            "(`python -m ops release status`), then roll back."
        )
    versions = model_registry.list_versions(aws, group, with_metrics=False)
    serving = next((v for v in versions if v.arn == status.serving), None)
    if serving is None:
        raise OpsError(f"Stack {stack_name!r} serves {status.serving}, which is not a version of {group!r}.")
    approved = [v for v in versions if v.approval_status == "Approved" and v.arn != serving.arn]
    newer = [v.version for v in approved if v.version > serving.version]
    if newer:
        raise OpsError(
            f"Version {newer[0]} is Approved and newer than the serving version {serving.version} "
            f"(its rollout failed?): reject it first (`python -m ops reject {newer[0]}`), "
            "or roll forward by approving a fixed version."
        )
    previous = next((v for v in approved if v.version < serving.version), None)
    if previous is None:
        raise OpsError(
            f"No Approved version older than the serving version {serving.version} in {group!r}: "
            "approve the one to go back to first."
        )
    model_registry.set_approval(aws, serving.arn, "Rejected", f"rolled back: {reason}"[:1024])
    response = aws.client("lambda").invoke(
        FunctionName=status.function,
        Payload=json.dumps({"reason": f"rollback of version {serving.version}: {reason}"}).encode(),
    )
    outcome = json.loads(response["Payload"].read() or b"{}")
    if response.get("FunctionError"):
        raise OpsError(
            f"Version {serving.version} is now Rejected, but the release function failed: "
            f"{outcome.get('errorMessage', outcome)}; it runs again on the next approval."
        )
    return previous, outcome


def _describe_component(component: Component) -> str:
    """The line on the inference component: its state and copies, and what a request does at zero."""
    copies = f"{component.copies} of {component.desired_copies} copies"
    if component.desired_copies == 0:
        copies = "scaled to zero: the first request fails and starts a copy (minutes), retry after it"
    return f"Component:    {component.name} {component.status}, {copies}"


def describe(status: ReleaseStatus) -> list[str]:
    """The lines `python -m ops release status` prints."""

    def version(arn: str | None) -> str:
        return f"version {version_of(arn)} ({arn})" if arn else "none"

    mode = (
        f"approving a version rolls it out (function {status.function})"
        if status.function
        else "pinned with -c modelPackageArn: approvals are not rolled out"
    )
    lines = [
        f"Serving:      {version(status.serving)}",
        f"Rolling out:  {version(status.rolling_out)}"
        + (f" (stack {status.stack_status})" if status.rolling_out else ""),
        f"Stack:        {status.stack_status}; {mode}",
        *([_describe_component(status.component)] if status.component else []),
        "Last rollouts:" if status.rollouts else "Last rollouts: none yet",
    ]
    for r in status.rollouts:
        line = f"  version {r.version:<4} {r.started:%Y-%m-%d %H:%M} UTC  {r.outcome}"
        lines.append(line + (f": {r.reason}" if r.reason else ""))
    return lines
