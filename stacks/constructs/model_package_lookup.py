"""Deploy-time lookup of the model package to serve (so `cdk synth` never calls AWS): the version the release
function requested (checked to be Approved in the group), else the newest Approved one.

Why a small Python function and not an AwsCustomResource: AwsCustomResource could call
ListModelPackages, but with no Approved version it would fail on reading
``ModelPackageSummaryList.0.ModelPackageArn`` from an empty list, an error that says nothing about
approval. This handler fails the deploy with "no Approved version ... approve one with ...". Its code is
the asset folder `model_package_lookup_handler/` (one `index.py`, the layout of every Lambda here), and the
test suite runs the very same file against moto.

CloudFormation calls the handler when the resource is created and when its properties change, not on
every deploy: the release function changes ``requested`` (a stack parameter) when a version is approved.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import CustomResource, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks.checkov import skip_checkov
from stacks.nag import acknowledge
from stacks.settings import EndpointSettings, StorageSettings

HANDLER_DIR = Path(__file__).with_name("model_package_lookup_handler")
RESOURCE_TYPE = "Custom::NewestApprovedModelPackage"
LOOKUP_ACTION = "sagemaker:ListModelPackages"
DESCRIBE_ACTION = "sagemaker:DescribeModelPackage"


class ModelPackageLookup(Construct):
    """A custom resource whose ``model_package_arn`` is ``requested`` (checked to be Approved in the group
    ``group_name``) or, when that is empty, the newest Approved version of the group."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        group_name: str,
        endpoint: EndpointSettings,
        requested: str,
        key: kms.IKey,
        storage: StorageSettings,
    ) -> None:
        super().__init__(scope, construct_id)
        self._group = group_name
        log_group = logs.LogGroup(self, "Logs", encryption_key=key, removal_policy=RemovalPolicy.DESTROY)
        log_group.node.default_child.retention_in_days = (
            storage.log_retention_days
        )  # any value CloudWatch accepts
        role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Finds the model package to serve (requested and Approved, else the newest "
            f"Approved) in {group_name}",
        )
        self.policy = iam.ManagedPolicy(
            self,
            "Policy",
            roles=[role],
            statements=[
                # ListModelPackages has no resource-level permissions: IAM only accepts '*' for it.
                iam.PolicyStatement(sid="ListModelPackages", actions=[LOOKUP_ACTION], resources=["*"]),
                # SageMaker lower-cases names in ARNs.
                iam.PolicyStatement(
                    sid="DescribeGroupPackages",
                    actions=[DESCRIBE_ACTION],
                    resources=[
                        Stack.of(self).format_arn(
                            service="sagemaker",
                            resource="model-package",
                            resource_name=f"{group_name.lower()}/*",
                        )
                    ],
                ),
                iam.PolicyStatement(
                    sid="HandlerLogs",
                    actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                    resources=[log_group.log_group_arn],
                ),
            ],
        )
        self.function = lambda_.Function(
            self,
            "Handler",
            runtime=lambda_.Runtime.PYTHON_3_14,
            handler="index.handler",
            # Only the handler: bytecode a test run leaves beside it would change the asset hash.
            code=lambda_.Code.from_asset(str(HANDLER_DIR), exclude=["__pycache__", "*.pyc"]),
            timeout=Duration.seconds(60),
            role=role,
            log_group=log_group,
            description="CloudFormation custom resource: the Approved model package of a group to serve",
        )
        resource = CustomResource(
            self,
            "Resource",
            service_token=self.function.function_arn,
            resource_type=RESOURCE_TYPE,
            properties={
                "ModelPackageGroupName": group_name,
                "LookupToken": endpoint.lookup_token,
                "Requested": requested,
            },
        )
        # The handler runs when this resource is created: its permissions must be attached by then.
        resource.node.add_dependency(self.policy)
        self.model_package_arn: str = resource.get_att_string("ModelPackageArn")
        self._acknowledge()

    def _acknowledge(self) -> None:
        """The findings that do not apply to a deploy-time-only custom resource handler, with reasons."""
        acknowledge(
            self.policy,
            "AwsSolutions-IAM5[Resource::*]",
            "sagemaker:ListModelPackages has no resource-level permissions; the policy allows only "
            "that read-only action on '*'.",
        )
        acknowledge(
            self.policy,
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:"
            f"model-package/{self._group.lower()}/*]",
            "Model package versions are numbered by SageMaker within our one group.",
        )
        concurrency = "Invoked only by CloudFormation while this stack deploys, one request at a time."
        dlq = (
            "CloudFormation custom-resource handler: a failure fails the deployment with the reason, "
            "which is the failure record; there is no asynchronous event to keep."
        )
        vpc = (
            "The project has no VPC; the handler calls only the SageMaker API and the CloudFormation "
            "response URL over TLS."
        )
        acknowledge(self.function, "NIST.800.53.R5-LambdaConcurrency", concurrency)
        acknowledge(self.function, "NIST.800.53.R5-LambdaDLQ", dlq)
        acknowledge(self.function, "NIST.800.53.R5-LambdaInsideVPC", vpc)
        skip_checkov(self.function, "CKV_AWS_115", concurrency)
        skip_checkov(self.function, "CKV_AWS_116", dlq)
        skip_checkov(self.function, "CKV_AWS_117", vpc)
