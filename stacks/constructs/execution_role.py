"""The SageMaker execution role that training, processing jobs and endpoints run as."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import ArnFormat, Aws, Stack
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks.nag import acknowledge, wildcard_resource

# Where SageMaker jobs and endpoints write their logs, and the CloudWatch namespaces of their metrics.
SAGEMAKER_LOG_GROUP_PREFIX = "/aws/sagemaker/"
SAGEMAKER_METRIC_NAMESPACES = "/aws/sagemaker/*"


class SageMakerExecutionRole(Construct):
    """An IAM role trusted by SageMaker in this account only, with least-privilege access.

    Grants: pull this one ECR repository; read and write ``read_write_buckets``; read
    ``read_only_buckets``; use ``key`` for S3 objects and job volumes; write SageMaker logs and metrics.
    The permissions live in ``self.policy``: resources that SageMaker starts with this role (models,
    pipelines) should depend on it so they never run before the permissions exist.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        repository: ecr.IRepository,
        key: kms.IKey,
        read_write_buckets: Sequence[s3.IBucket],
        read_only_buckets: Sequence[s3.IBucket],
    ) -> None:
        super().__init__(scope, construct_id)
        self.role = iam.Role(
            self,
            "Role",
            description="SageMaker execution role for the JAX LLM training, processing and endpoints",
            assumed_by=iam.ServicePrincipal(
                "sagemaker.amazonaws.com",
                # Confused-deputy protection: only SageMaker acting for this account may assume the role.
                conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
            ),
        )
        stack = Stack.of(self)
        log_groups = stack.format_arn(
            service="logs",
            resource="log-group",
            resource_name=f"{SAGEMAKER_LOG_GROUP_PREFIX}*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        log_streams = f"{log_groups}:log-stream:*"
        statements = [
            iam.PolicyStatement(
                sid="EcrAuthorizationToken", actions=["ecr:GetAuthorizationToken"], resources=["*"]
            ),
            iam.PolicyStatement(
                sid="EcrPullProjectImage",
                actions=[
                    "ecr:BatchCheckLayerAvailability",
                    "ecr:BatchGetImage",
                    "ecr:GetDownloadUrlForLayer",
                ],
                resources=[repository.repository_arn],
            ),
            iam.PolicyStatement(
                sid="S3ListBuckets",
                actions=["s3:GetBucketLocation", "s3:ListBucket"],
                resources=[b.bucket_arn for b in [*read_write_buckets, *read_only_buckets]],
            ),
            iam.PolicyStatement(
                sid="S3ReadWriteObjects",
                actions=["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"],
                resources=[b.arn_for_objects("*") for b in read_write_buckets],
            ),
            iam.PolicyStatement(
                sid="KmsUseProjectKey",
                actions=["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"],
                resources=[key.key_arn],
            ),
            # Job and endpoint volumes are encrypted through grants that SageMaker creates for AWS resources.
            iam.PolicyStatement(
                sid="KmsGrantForSageMakerVolumes",
                actions=["kms:CreateGrant"],
                resources=[key.key_arn],
                conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}},
            ),
            iam.PolicyStatement(
                sid="CloudWatchLogs",
                actions=[
                    "logs:CreateLogGroup",
                    "logs:CreateLogStream",
                    "logs:DescribeLogStreams",
                    "logs:PutLogEvents",
                ],
                resources=[log_groups, log_streams],
            ),
            # PutMetricData has no resource-level permissions; the namespace condition scopes it instead.
            iam.PolicyStatement(
                sid="CloudWatchMetrics",
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringLike": {"cloudwatch:namespace": SAGEMAKER_METRIC_NAMESPACES}},
            ),
        ]
        if read_only_buckets:
            statements.insert(
                4,
                iam.PolicyStatement(
                    sid="S3ReadObjects",
                    actions=["s3:GetObject"],
                    resources=[b.arn_for_objects("*") for b in read_only_buckets],
                ),
            )
        self.policy = iam.ManagedPolicy(
            self,
            "Policy",
            statements=statements,
            roles=[self.role],
            description="What SageMaker jobs and endpoints of the JAX LLM may do",
        )
        self._acknowledge_wildcards([*read_write_buckets, *read_only_buckets], [log_groups, log_streams])

    def _acknowledge_wildcards(self, buckets: Sequence[s3.IBucket], log_arns: Sequence[str]) -> None:
        """Acknowledge, one by one, the wildcards cdk-nag reports on the policy, with the reason for each."""
        acknowledge(
            self.policy,
            "AwsSolutions-IAM5[Resource::*]",
            "Only ecr:GetAuthorizationToken and cloudwatch:PutMetricData use Resource '*': "
            "neither API supports resource-level permissions; PutMetricData is limited to "
            "SageMaker namespaces.",
        )
        for bucket in buckets:
            objects = wildcard_resource(self, bucket.arn_for_objects("*"))
            acknowledge(
                self.policy,
                f"AwsSolutions-IAM5[{objects}]",
                "Object actions within one project bucket: SageMaker writes job outputs, checkpoints "
                "and models under keys named per job at run time.",
            )
        for arn in log_arns:
            acknowledge(
                self.policy,
                f"AwsSolutions-IAM5[{wildcard_resource(self, arn)}]",
                "SageMaker creates one log group per job type under /aws/sagemaker/ and one "
                "stream per job host, named at run time; the role cannot write any other log group.",
            )
