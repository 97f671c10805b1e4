"""cdk-nag wiring: the rule packs every synth runs, and the one way to acknowledge a finding."""

from __future__ import annotations

from aws_cdk import Acknowledgment, App, Stack, Validations
from cdk_nag import AwsSolutionsChecks, NIST80053R5Checks
from constructs import IConstruct


def add_nag_checks(app: App) -> None:
    """Run AWS Solutions and NIST 800-53 rev 5 checks on every stack of ``app`` at synth."""
    Validations.of(app).add_plugins(AwsSolutionsChecks(app), NIST80053R5Checks(app))


def acknowledge(construct: IConstruct, finding: str, reason: str) -> None:
    """Acknowledge one cdk-nag finding (e.g. ``AwsSolutions-IAM5[Resource::*]``) on one construct.

    The reason is what a security reviewer reads: say why the finding is acceptable here.
    """
    if len(reason.strip()) < 20:
        raise ValueError(f"acknowledging {finding} needs a real reason, got {reason!r}")
    Validations.of(construct).acknowledge(Acknowledgment(id=finding, reason=reason))


def wildcard_resource(scope: IConstruct, arn: str) -> str:
    """The ``Resource::...`` suffix cdk-nag gives a wildcard ARN (tokens resolved the way it prints them).

    cdk-nag names CloudFormation references ``<Logical.Attr>``/``<Logical>`` and pseudo parameters
    ``<AWS::Region>``; computing the same text lets an acknowledgement name the exact finding without
    copying generated logical ids into the code.
    """
    return f"Resource::{_render(Stack.of(scope).resolve(arn))}"


def _render(value: object) -> str:
    """A resolved CloudFormation value as cdk-nag renders it in finding ids."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Ref" in value:
        return f"<{value['Ref']}>"
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return f"<{'.'.join(value['Fn::GetAtt'])}>"
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(_render(part) for part in parts)
    raise ValueError(f"cannot render {value!r} as a cdk-nag finding id")
