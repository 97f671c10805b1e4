"""Copies the built image asset into the project's ECR repository with cdk-ecr-deployment, least-privilege."""

from __future__ import annotations

import cdk_ecr_deployment as ecr_deployment
from aws_cdk import Stack
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from stacks.checkov import skip_checkov
from stacks.nag import acknowledge
from stacks.settings import StorageSettings

# cdk-ecr-deployment names its singleton handler function after this purpose (one per stack).
HANDLER_PURPOSE = "Custom::CDKECRDeployment"
PULL_ACTIONS = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
PUSH_ACTIONS = ["ecr:CompleteLayerUpload", "ecr:InitiateLayerUpload", "ecr:PutImage", "ecr:UploadLayerPart"]


class ImageCopy(Construct):
    """An ECRDeployment from ``source_repository``/``source_uri`` to ``destination_uri`` in ``repository``.

    The library's handler would get ECR push rights on every repository ('*'); it runs here with a role
    whose policy names the two repositories, and its log group is encrypted with ``key``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        source_repository: ecr.IRepository,
        source_uri: str,
        repository: ecr.IRepository,
        destination_uri: str,
        key: kms.IKey,
        storage: StorageSettings,
    ) -> None:
        super().__init__(scope, construct_id)
        self.role = iam.Role(
            self,
            "HandlerRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Copies the jax-llm image asset into the project repository",
        )
        # Immutable view: the library's own '*' statements are dropped, ours below are the only grants.
        self.deployment = ecr_deployment.ECRDeployment(
            self,
            "Deployment",
            src=ecr_deployment.DockerImageName(source_uri),
            dest=ecr_deployment.DockerImageName(destination_uri),
            role=self.role.without_policy_updates(),
            # Lambda's network and CPU share grow with memory: the GPU image is several GB of layers.
            memory_limit=2048,
        )
        handler = _handler_function(Stack.of(self))
        log_group = handler.node.find_child("LogGroup").node.default_child
        log_group.kms_key_id = key.key_arn
        log_group.retention_in_days = storage.log_retention_days

        self.policy = iam.ManagedPolicy(
            self,
            "HandlerPolicy",
            roles=[self.role],
            statements=[
                iam.PolicyStatement(
                    sid="EcrAuthorizationToken", actions=["ecr:GetAuthorizationToken"], resources=["*"]
                ),
                iam.PolicyStatement(
                    sid="PullImageAsset", actions=PULL_ACTIONS, resources=[source_repository.repository_arn]
                ),
                iam.PolicyStatement(
                    sid="PushToProjectRepository",
                    actions=sorted(PULL_ACTIONS + PUSH_ACTIONS),
                    resources=[repository.repository_arn],
                ),
                iam.PolicyStatement(
                    sid="HandlerLogs",
                    actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                    resources=[log_group.attr_arn],
                ),
            ],
        )
        # The copy runs only once its permissions exist.
        self.deployment.node.add_dependency(self.policy)
        self._acknowledge(handler)

    def _acknowledge(self, handler: lambda_.Function) -> None:
        """Acknowledge the findings that do not apply to a deploy-time-only custom resource handler."""
        acknowledge(
            self.policy,
            "AwsSolutions-IAM5[Resource::*]",
            "Only ecr:GetAuthorizationToken uses Resource '*': the API has no resource-level permissions.",
        )
        concurrency = "Invoked only by CloudFormation during deployments of this stack, one copy at a time."
        dlq = (
            "CloudFormation custom-resource handler: a failed invocation fails and rolls back the "
            "deployment, which is the failure record; there is no asynchronous event to keep."
        )
        vpc = (
            "The project has no VPC; the handler talks only to the ECR API and registry endpoints over "
            "TLS with IAM-signed credentials."
        )
        acknowledge(handler, "NIST.800.53.R5-LambdaConcurrency", concurrency)
        acknowledge(handler, "NIST.800.53.R5-LambdaDLQ", dlq)
        acknowledge(handler, "NIST.800.53.R5-LambdaInsideVPC", vpc)
        skip_checkov(handler, "CKV_AWS_115", concurrency)
        skip_checkov(handler, "CKV_AWS_116", dlq)
        skip_checkov(handler, "CKV_AWS_117", vpc)


def _handler_function(stack: Stack) -> lambda_.Function:
    """The singleton function cdk-ecr-deployment adds at stack level (the library does not expose it)."""
    for child in stack.node.children:
        if isinstance(child, lambda_.Function) and child.node.id.startswith(HANDLER_PURPOSE):
            return child
    raise LookupError(f"no {HANDLER_PURPOSE} handler in stack {stack.stack_name}")
