"""Skipping a checkov check on one CloudFormation resource, in the template, with the reason beside it."""

from __future__ import annotations

from aws_cdk import CfnResource
from constructs import IConstruct


def skip_checkov(construct: IConstruct, check_id: str, reason: str) -> None:
    """Record in ``construct``'s resource metadata that checkov ``check_id`` does not apply, and why.

    ``construct`` is an L1 resource or an L2 whose default child is one. checkov reads
    ``Metadata.checkov.skip`` from the synthesized template and reports the check as skipped.
    """
    resource = construct if isinstance(construct, CfnResource) else construct.node.default_child
    if not isinstance(resource, CfnResource):
        raise TypeError(f"{construct.node.path} has no CloudFormation resource to annotate")
    if len(reason.strip()) < 20:
        raise ValueError(f"skipping {check_id} needs a real reason, got {reason!r}")
    checkov = resource.get_metadata("checkov") or {"skip": []}
    checkov["skip"] = [*checkov["skip"], {"id": check_id, "comment": reason}]
    resource.add_metadata("checkov", checkov)
