"""Deploy-time training: a deploy whose training definition changed starts one pipeline execution.

An AwsCustomResource calls StartPipelineExecution on create and on update. CloudFormation updates a
custom resource only when its properties change, and the properties carry a digest of the training
definition as resolved in the template (image tag, hyperparameters, data location, instance settings,
every step argument): a deploy that changes none of these calls nothing and starts nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import custom_resources as cr
from constructs import Construct, IDependable

from stacks.checkov import skip_checkov
from stacks.nag import acknowledge
from stacks.settings import StorageSettings

DIGEST_CHARS = 16  # 64 bits of sha256: plenty to tell definitions apart, short enough to read in the console
# AwsCustomResource runs every instance in a stack on one singleton function with this construct id.
PROVIDER_FUNCTION_ID = "AWS679f53fac002430cb0da5b7982bd2287"


def definition_digest(scope: Construct, definition: dict) -> str:
    """A stable digest of ``definition`` with its tokens resolved to CloudFormation references."""
    resolved = Stack.of(scope).resolve(definition)
    return hashlib.sha256(json.dumps(resolved, sort_keys=True).encode()).hexdigest()[:DIGEST_CHARS]


class TrainingTrigger(Construct):
    """Starts an execution of ``pipeline_name`` whenever ``definition`` changes between deploys.

    The provider function runs as ``self.role``, whose only grants are StartPipelineExecution on this
    pipeline and writing to its own log group (encrypted with ``key``). ``depends_on``: what must exist
    before a run starts (the pipeline, both roles' policies, the image). ``execution_arn``: the ARN of
    the execution that the latest change started.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        pipeline_name: str,
        pipeline_arn: str,
        definition: dict,
        depends_on: Sequence[IDependable],
        key: kms.IKey,
        storage: StorageSettings,
    ) -> None:
        super().__init__(scope, construct_id)
        self.digest = definition_digest(self, definition)
        log_group = logs.LogGroup(self, "Logs", encryption_key=key)
        log_group.node.default_child.retention_in_days = (
            storage.log_retention_days
        )  # any value CloudWatch accepts
        self.role = iam.Role(
            self,
            "ProviderRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Starts the training pipeline when a deploy changed its definition",
        )
        self.policy = iam.ManagedPolicy(
            self,
            "ProviderPolicy",
            roles=[self.role],
            statements=[
                iam.PolicyStatement(
                    sid="StartTrainingPipeline",
                    actions=["sagemaker:StartPipelineExecution"],
                    resources=[pipeline_arn],
                ),
                iam.PolicyStatement(
                    sid="ProviderLogs",
                    actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                    resources=[log_group.log_group_arn],
                ),
            ],
        )
        start = cr.AwsSdkCall(
            service="SageMaker",
            action="startPipelineExecution",
            parameters={
                "PipelineName": pipeline_name,
                "PipelineExecutionDisplayName": f"deploy-{self.digest}",
                "PipelineExecutionDescription": f"Started by cdk deploy: training definition {self.digest}",
            },
            # Each start is its own execution; CloudFormation's delete of the previous id is a no-op.
            physical_resource_id=cr.PhysicalResourceId.from_response("PipelineExecutionArn"),
            output_paths=["PipelineExecutionArn"],
        )
        self.resource = cr.AwsCustomResource(
            self,
            "StartExecution",
            on_create=start,
            on_update=start,
            role=self.role,
            install_latest_aws_sdk=False,  # the runtime's SDK has the call; no download at deploy time
            log_group=log_group,
        )
        for dependency in [self.policy, *depends_on]:
            self.resource.node.add_dependency(dependency)
        self.execution_arn: str = self.resource.get_response_field("PipelineExecutionArn")
        self._acknowledge(Stack.of(self).node.find_child(PROVIDER_FUNCTION_ID))

    def _acknowledge(self, function: lambda_.Function) -> None:
        """Acknowledge (cdk-nag) and skip (checkov) the findings that do not apply to a deploy-time-only
        custom resource handler."""
        concurrency = "Invoked only by CloudFormation during deployments of this stack, one call per deploy."
        dlq = (
            "CloudFormation custom-resource handler: a failed invocation fails and rolls back the "
            "deployment, which is the failure record; there is no asynchronous event to keep."
        )
        vpc = (
            "The project has no VPC; the handler calls only the SageMaker API over TLS with IAM-signed "
            "credentials."
        )
        for nag_rule, checkov_id, reason in [
            ("NIST.800.53.R5-LambdaConcurrency", "CKV_AWS_115", concurrency),
            ("NIST.800.53.R5-LambdaDLQ", "CKV_AWS_116", dlq),
            ("NIST.800.53.R5-LambdaInsideVPC", "CKV_AWS_117", vpc),
        ]:
            acknowledge(function, nag_rule, reason)
            skip_checkov(function, checkov_id, reason)
