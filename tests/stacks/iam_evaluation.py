"""A small IAM evaluator over a synthesized template: is this call allowed by this role's policies?

It implements what our policies use (Action and Resource with wildcards; StringEquals, StringLike,
ArnLike, ArnEquals and Bool conditions; explicit Deny wins) and refuses anything else, so a policy
that grows a construct it does not understand fails the test instead of being misjudged.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from tests.stacks.cfn_values import TemplateValues

CONDITION_OPERATORS = {
    "StringEquals": lambda actual, expected: actual == expected,
    "StringLike": lambda actual, pattern: fnmatchcase(actual, pattern),
    "ArnEquals": lambda actual, expected: actual == expected,
    "ArnLike": lambda actual, pattern: fnmatchcase(actual, pattern),
    "Bool": lambda actual, expected: str(actual).lower() == str(expected).lower(),
}


def _listed(value: Any) -> list:
    return value if isinstance(value, list) else [value]


@dataclass(frozen=True)
class RolePolicies:
    """The resolved statements of every policy attached to one role, and its AWS-managed policy ARNs."""

    statements: list[dict]
    managed_policy_arns: list[str]

    @classmethod
    def of(cls, template: dict, role_logical_id: str) -> RolePolicies:
        """Inline policies, attached customer-managed policies and AWS::IAM::Policy resources of the role."""
        values = TemplateValues(template)
        role = template["Resources"][role_logical_id]["Properties"]
        documents = [p["PolicyDocument"] for p in role.get("Policies", [])]
        for resource in template["Resources"].values():
            if resource["Type"] in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy") and {
                "Ref": role_logical_id
            } in resource["Properties"].get("Roles", []):
                documents.append(resource["Properties"]["PolicyDocument"])
        statements = [s for d in values.resolve(documents) for s in _listed(d["Statement"])]
        return cls(statements, values.resolve(role.get("ManagedPolicyArns", [])))

    def actions(self) -> set[str]:
        """Every action any Allow statement names."""
        return {a for s in self.statements if s["Effect"] == "Allow" for a in _listed(s["Action"])}

    def allows(self, action: str, resource: str, context: dict[str, str] | None = None) -> bool:
        """Whether the call is allowed: some Allow matches and no Deny does."""
        assert not self.managed_policy_arns, f"cannot evaluate managed policies {self.managed_policy_arns}"
        matching = [s for s in self.statements if _matches(s, action, resource, context or {})]
        effects = {s["Effect"] for s in matching}
        return "Allow" in effects and "Deny" not in effects


def _matches(statement: dict, action: str, resource: str, context: dict[str, str]) -> bool:
    unsupported = {"NotAction", "NotResource", "NotPrincipal"} & statement.keys()
    assert not unsupported, f"unsupported statement element(s) {unsupported}: {statement}"
    if not any(fnmatchcase(action.lower(), a.lower()) for a in _listed(statement["Action"])):
        return False
    if not any(fnmatchcase(resource, r) for r in _listed(statement["Resource"])):
        return False
    for operator, conditions in statement.get("Condition", {}).items():
        assert operator in CONDITION_OPERATORS, f"unsupported condition operator {operator}"
        for key, expected in conditions.items():
            if key not in context or not any(
                CONDITION_OPERATORS[operator](context[key], e) for e in _listed(expected)
            ):
                return False
    return True
