"""Resolve a synthesized template's intrinsic functions to the values CloudFormation would give them.

Pseudo parameters become a fixed account and region; ``Ref`` and ``Fn::GetAtt`` become the name or
ARN the resource would have (its explicit name property when it has one, else a name derived from
its logical id). Tests use this to read the pipeline definition and IAM policies as deployed.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

ACCOUNT = "123456789012"
REGION = "us-east-1"
PSEUDO = {
    "AWS::Partition": "aws",
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": "TrainingStack",
    "AWS::NoValue": None,
    "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/ThisStack/6a7e8feb-b491-4cf7",
}
# Explicit name properties, by resource type.
NAME_PROPERTIES = {
    "AWS::S3::Bucket": "BucketName",
    "AWS::IAM::Role": "RoleName",
    "AWS::ECR::Repository": "RepositoryName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::SageMaker::ModelPackageGroup": "ModelPackageGroupName",
    "AWS::SageMaker::Pipeline": "PipelineName",
    "AWS::IAM::ManagedPolicy": "ManagedPolicyName",
    "AWS::SageMaker::MlflowTrackingServer": "TrackingServerName",
}


class TemplateValues:
    """Resolves intrinsics in one template."""

    def __init__(self, template: dict) -> None:
        self.resources = template["Resources"]

    def name(self, logical_id: str) -> str:
        """What ``Ref`` returns for the resource: its name (or key id for a KMS key)."""
        resource = self.resources[logical_id]
        kind = resource["Type"]
        if kind == "AWS::KMS::Key":
            return str(uuid.uuid5(uuid.NAMESPACE_DNS, logical_id))
        explicit = resource.get("Properties", {}).get(NAME_PROPERTIES.get(kind, ""))
        if explicit is not None:
            return self.resolve(explicit)
        return logical_id.lower()[:63] if kind == "AWS::S3::Bucket" else logical_id

    def arn(self, logical_id: str) -> str:
        """The resource's ARN."""
        kind, name = self.resources[logical_id]["Type"], self.name(logical_id)
        arns = {
            "AWS::IAM::Role": f"arn:aws:iam::{ACCOUNT}:role/{name}",
            "AWS::IAM::ManagedPolicy": f"arn:aws:iam::{ACCOUNT}:policy/{name}",
            "AWS::KMS::Key": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{name}",
            "AWS::S3::Bucket": f"arn:aws:s3:::{name}",
            "AWS::ECR::Repository": f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{name}",
            "AWS::Logs::LogGroup": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{name}:*",
            "AWS::SageMaker::ModelPackageGroup": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package-group/{name}",
            "AWS::SageMaker::Pipeline": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:pipeline/{name.lower()}",
            "AWS::Lambda::Function": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}",
            "AWS::SageMaker::MlflowTrackingServer": (
                f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:mlflow-tracking-server/{name}"
            ),
        }
        return arns.get(kind, f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:resource/{logical_id}")

    def attribute(self, logical_id: str, attribute: str) -> Any:
        """What ``Fn::GetAtt`` returns."""
        if attribute.endswith("Arn"):
            return self.arn(logical_id)
        if attribute == "RepositoryUri":
            return f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{self.name(logical_id)}"
        return f"{logical_id}.{attribute}"

    def resolve(self, value: Any) -> Any:
        """``value`` with every intrinsic function replaced by its deployed value."""
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return PSEUDO[arg] if arg in PSEUDO else self.name(arg)
            if key == "Fn::GetAtt":
                logical_id, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.attribute(logical_id, attribute)
            if key == "Fn::Join":
                return arg[0].join(str(self.resolve(v)) for v in arg[1])
            if key == "Fn::Select":
                return self.resolve(arg[1])[int(self.resolve(arg[0]))]
            if key == "Fn::Split":
                return self.resolve(arg[1]).split(arg[0])
            if key == "Fn::Sub" and isinstance(arg, str):
                for name, pseudo in PSEUDO.items():
                    arg = arg.replace("${" + name + "}", str(pseudo))
                return arg
        return {k: self.resolve(v) for k, v in value.items()}


def resources_of_type(template: dict, kind: str) -> dict[str, dict]:
    """Logical id -> resource for every resource of ``kind``."""
    return {lid: r for lid, r in template["Resources"].items() if r["Type"] == kind}


def pipeline_definitions(template: dict) -> dict[str, dict]:
    """Pipeline name -> its definition, parsed from PipelineDefinitionBody as CloudFormation resolves it."""
    values = TemplateValues(template)
    return {
        values.resolve(r["Properties"]["PipelineName"]): json.loads(
            values.resolve(r["Properties"]["PipelineDefinition"]["PipelineDefinitionBody"])
        )
        for r in resources_of_type(template, "AWS::SageMaker::Pipeline").values()
    }


def walk_steps(steps: list[dict]) -> list[dict]:
    """Every step, including those inside Condition steps' branches, in definition order."""
    found = []
    for step in steps:
        found.append(step)
        if step["Type"] == "Condition":
            found += walk_steps(step["Arguments"]["IfSteps"]) + walk_steps(step["Arguments"]["ElseSteps"])
    return found
