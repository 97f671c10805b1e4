"""What EndpointStack's tests share: the pinned variant's values and lookups of single resources."""

from __future__ import annotations

from typing import Any

from aws_cdk.assertions import Template

from stacks.constructs.model_package_lookup import RESOURCE_TYPE

PINNED_ARN = "arn:aws:sagemaker:eu-west-1:123456789012:model-package/jax-llm-gpt/7"
# A GPU type without instance storage, so the endpoint config may carry a volume KMS key.
EBS_ONLY_TYPE = "ml.p3.2xlarge"


def one_resource(template: Template, kind: str) -> tuple[str, dict[str, Any]]:
    """The single resource of ``kind``: (logical id, resource)."""
    found = template.find_resources(kind)
    assert len(found) == 1, f"expected one {kind}, found {sorted(found)}"
    return next(iter(found.items()))


def resource_properties(template: Template, kind: str) -> dict[str, Any]:
    return one_resource(template, kind)[1]["Properties"]


def lookup_function(template: Template) -> tuple[str, dict[str, Any]]:
    """The lookup's handler function (the stack has the release function too): (logical id, resource)."""
    function_id = one_resource(template, RESOURCE_TYPE)[1]["Properties"]["ServiceToken"]["Fn::GetAtt"][0]
    return function_id, template.to_json()["Resources"][function_id]
