"""Reads a deployed stack's CloudFormation outputs, so the CLI needs no names typed by hand."""

from __future__ import annotations

from ops.aws import Aws
from ops.errors import OpsError, not_found_as


def stack_outputs(aws: Aws, stack_name: str) -> dict[str, str]:
    """OutputKey -> OutputValue of `stack_name`; OpsError saying how to deploy it when it does not exist."""
    cloudformation = aws.client("cloudformation")
    with not_found_as(
        f"Stack {stack_name!r} is not deployed in this account and region: "
        f"run `cdk deploy {stack_name}` (or pass the stack name the app used)."
    ):
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}


def require_output(outputs: dict[str, str], key: str, stack_name: str) -> str:
    """The value of output `key`, or an OpsError naming the stack and the outputs it does have."""
    if key not in outputs:
        have = ", ".join(sorted(outputs)) or "none"
        raise OpsError(
            f"Stack {stack_name!r} has no output {key!r} (it has: {have}); redeploy it with this app."
        )
    return outputs[key]
