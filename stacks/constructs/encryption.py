"""The customer-managed KMS key that encrypts the project's buckets, repository and SageMaker volumes."""

from __future__ import annotations

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from stacks.settings import StorageSettings

# What CloudWatch Logs does with a log group's key (its documented key-policy actions, spelt out).
LOGS_KEY_ACTIONS = [
    "kms:Decrypt",
    "kms:DescribeKey",
    "kms:Encrypt",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
]


class EncryptionKey(Construct):
    """A symmetric KMS key with yearly automatic rotation."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        alias: str,
        storage: StorageSettings,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self,
            "Key",
            alias=alias,
            description="Encrypts the JAX LLM project's S3 data, ECR images and SageMaker volumes",
            enable_key_rotation=True,
            pending_window=Duration.days(storage.kms_pending_window_days),
            removal_policy=removal_policy,
        )
        # CloudWatch Logs encrypts log groups of this account and region with the key (the log-group KMS
        # contract: the service principal, limited by the encryption context naming the log group).
        stack = Stack.of(self)
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchLogsEncryptLogGroups",
                principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
                actions=LOGS_KEY_ACTIONS,
                resources=["*"],
                conditions={
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": stack.format_arn(
                            service="logs",
                            resource="log-group",
                            resource_name="*",
                            arn_format=ArnFormat.COLON_RESOURCE_NAME,
                        )
                    }
                },
            )
        )
