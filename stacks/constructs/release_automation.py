"""Approving a model version is the release button: EventBridge rules and a function updating EndpointStack.

``RequestedModelPackageArn`` is a stack parameter (empty on the first deploy: the lookup then takes the
newest Approved version). When a version in the group turns Approved, or the stack settles after an update,
the release function (``release_handler/index.py``) calls UpdateStack on this stack with the previous
template and only that parameter changed; CloudFormation runs it as the role the stack was deployed with
(CDK's deploy role), so the rollout is an ordinary CloudFormation update: the endpoint's blue/green traffic
shifting and alarm rollback apply, and the stack records it.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Aws, CfnOutput, CfnParameter, DefaultStackSynthesizer, Duration, RemovalPolicy, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks.checkov import skip_checkov
from stacks.constructs.release_handler.index import PARAMETER as PARAMETER_ID
from stacks.nag import acknowledge
from stacks.settings import StorageSettings

HANDLER_DIR = Path(__file__).with_name("release_handler")
FUNCTION_OUTPUT = "ReleaseFunctionName"
APPROVAL_EVENT = "SageMaker Model Package State Change"
STACK_EVENT = "CloudFormation Stack Status Change"
SETTLED_STATUSES = ["CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE"]
# What the release function's policy grants: its own calls, and what CloudFormation checks of the caller of
# UpdateStack (reading the SSM-typed BootstrapVersion parameter CDK adds, which CloudFormation resolves with
# the caller's credentials, as CDK's own deploy role may). No iam:PassRole: the update names no RoleARN, so
# CloudFormation uses the stack's own role even where the caller may not pass it (UpdateStack's RoleARN).
RELEASE_ACTIONS = (
    "sagemaker:ListModelPackages",
    "cloudformation:DescribeStacks",
    "cloudformation:UpdateStack",
    "ssm:GetParameters",
)


class ModelRelease(Construct):
    """The ``requested`` parameter, the release function and the two rules that start it."""

    def __init__(
        self, scope: Construct, construct_id: str, *, group_name: str, key: kms.IKey, storage: StorageSettings
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        parameter = CfnParameter(
            stack,
            PARAMETER_ID,
            type="String",
            default="",
            allowed_pattern=r"^(arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:model-package/"
            r"[a-zA-Z0-9-]{1,63}/\d+)?$",
            description="The model package version to serve; set by the release function when a version is "
            "approved. Empty: the newest Approved version of the group.",
        )
        self.requested: str = parameter.value_as_string
        qualifier = stack.synthesizer.bootstrap_qualifier or DefaultStackSynthesizer.DEFAULT_QUALIFIER
        bootstrap_version = stack.format_arn(
            service="ssm", resource="parameter", resource_name=f"cdk-bootstrap/{qualifier}/version"
        )

        log_group = logs.LogGroup(self, "Logs", encryption_key=key, removal_policy=RemovalPolicy.DESTROY)
        log_group.node.default_child.retention_in_days = storage.log_retention_days
        role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Rolls the newest Approved version of {group_name} out to {stack.stack_name}",
        )
        self.policy = iam.ManagedPolicy(
            self,
            "Policy",
            roles=[role],
            statements=[
                # ListModelPackages has no resource-level permissions: IAM only accepts '*' for it.
                iam.PolicyStatement(
                    sid="ListModelPackages", actions=["sagemaker:ListModelPackages"], resources=["*"]
                ),
                iam.PolicyStatement(
                    sid="UpdateThisStack",
                    resources=[Aws.STACK_ID],
                    actions=["cloudformation:DescribeStacks", "cloudformation:UpdateStack"],
                ),
                iam.PolicyStatement(
                    sid="ResolveBootstrapVersion",
                    actions=["ssm:GetParameters"],
                    resources=[bootstrap_version],
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
            environment_encryption=key,
            # One at a time: two approvals in a row are decided in order, and the second finds the stack busy.
            reserved_concurrent_executions=1,
            environment={"MODEL_PACKAGE_GROUP_NAME": group_name, "STACK_ID": Aws.STACK_ID},
            description=f"Rolls the newest Approved model version out to {stack.stack_name}",
        )
        self.function.node.add_dependency(self.policy)
        target = targets.LambdaFunction(self.function, retry_attempts=2, max_event_age=Duration.hours(1))
        approvals = events.EventPattern(
            source=["aws.sagemaker"],
            detail_type=[APPROVAL_EVENT],
            detail={"ModelPackageGroupName": [group_name], "ModelApprovalStatus": ["Approved"]},
        )
        settled = events.EventPattern(
            source=["aws.cloudformation"],
            detail_type=[STACK_EVENT],
            resources=[Aws.STACK_ID],
            detail={"status-details": {"status": SETTLED_STATUSES}},
        )
        self.approval_rule = events.Rule(
            self,
            "OnApproval",
            event_pattern=approvals,
            targets=[target],
            description=f"A version of {group_name} turned Approved: roll it out",
        )
        self.settled_rule = events.Rule(
            self,
            "OnStackSettled",
            event_pattern=settled,
            targets=[target],
            description=f"{stack.stack_name} settled: roll out an approval that came while it was busy",
        )
        CfnOutput(
            stack,
            FUNCTION_OUTPUT,
            value=self.function.function_name,
            description="Rolls the newest Approved version out (python -m ops rollback invokes it)",
        )
        self._acknowledge()

    def _acknowledge(self) -> None:
        """The findings that do not apply to an event-driven function that only starts stack updates."""
        acknowledge(
            self.policy,
            "AwsSolutions-IAM5[Resource::*]",
            "sagemaker:ListModelPackages has no resource-level permissions; the policy allows only "
            "that read-only action on '*'.",
        )
        dlq = (
            "Each event only asks for a reconciliation that the next approval or stack event repeats; "
            "a failed invocation is retried twice by Lambda and logged, and the stack events keep the "
            "record of every rollout."
        )
        vpc = (
            "The project has no VPC; the function calls only the SageMaker and CloudFormation APIs over TLS."
        )
        acknowledge(self.function, "NIST.800.53.R5-LambdaDLQ", dlq)
        acknowledge(self.function, "NIST.800.53.R5-LambdaInsideVPC", vpc)
        skip_checkov(self.function, "CKV_AWS_116", dlq)
        skip_checkov(self.function, "CKV_AWS_117", vpc)
