"""S3 buckets: artifacts (models, checkpoints, pipeline files), training data, and their access logs."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks.checkov import skip_checkov
from stacks.nag import acknowledge
from stacks.settings import StorageSettings


class ProjectBuckets(Construct):
    """KMS-encrypted, TLS-only, versioned buckets with public access blocked and access logging.

    ``storage.data_bucket_name`` names an existing data bucket to use instead of creating one ("" creates one).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        key: kms.IKey,
        storage: StorageSettings,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        # S3 server access logs cannot be delivered to an SSE-KMS bucket, hence S3-managed keys here.
        self.access_logs_bucket = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            versioned=True,
            lifecycle_rules=[
                s3.LifecycleRule(
                    expiration=Duration.days(storage.access_log_retention_days),
                    noncurrent_version_expiration=Duration.days(1),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
            **_secure_bucket_props(removal_policy),
        )
        no_self_logging = "This is the access-log destination; logging it into itself would loop."
        acknowledge(self.access_logs_bucket, "AwsSolutions-S1", no_self_logging)
        acknowledge(self.access_logs_bucket, "NIST.800.53.R5-S3BucketLoggingEnabled", no_self_logging)
        skip_checkov(self.access_logs_bucket, "CKV_AWS_18", no_self_logging)
        acknowledge(
            self.access_logs_bucket,
            "NIST.800.53.R5-S3DefaultEncryptionKMS",
            "S3 server access logging only delivers to buckets encrypted with S3-managed keys.",
        )
        acknowledge(
            self.access_logs_bucket,
            "NIST.800.53.R5-S3BucketReplicationEnabled",
            "Access logs are kept for their retention period in this region; replicating them would "
            "need a second logging pipeline for no recovery benefit to the project's data.",
        )

        self.artifacts_bucket = self._encrypted_bucket(
            "Artifacts", key, storage.noncurrent_version_days, removal_policy
        )
        if storage.data_bucket_name:
            self.data_bucket: s3.IBucket = s3.Bucket.from_bucket_name(self, "Data", storage.data_bucket_name)
        else:
            self.data_bucket = self._encrypted_bucket(
                "Data", key, storage.noncurrent_version_days, removal_policy
            )

    def _encrypted_bucket(
        self, construct_id: str, key: kms.IKey, noncurrent_version_days: int, removal_policy: RemovalPolicy
    ) -> s3.Bucket:
        """A versioned SSE-KMS bucket that logs to the access-log bucket under its own prefix."""
        bucket = s3.Bucket(
            self,
            construct_id,
            encryption=s3.BucketEncryption.KMS,
            encryption_key=key,
            bucket_key_enabled=True,  # one data key per bucket, not per object: far fewer KMS calls
            versioned=True,
            server_access_logs_bucket=self.access_logs_bucket,
            server_access_logs_prefix=f"{construct_id.lower()}/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    noncurrent_version_expiration=Duration.days(noncurrent_version_days),
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                )
            ],
            **_secure_bucket_props(removal_policy),
        )
        acknowledge(
            bucket,
            "NIST.800.53.R5-S3BucketReplicationEnabled",
            "Single-region project; versioning with retention protects the objects and "
            "cross-region replication would double storage for data that can be regenerated.",
        )
        return bucket


def _secure_bucket_props(removal_policy: RemovalPolicy) -> dict:
    """Properties every bucket of the project shares: private, owner-enforced, TLS 1.2+ only."""
    return dict(
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        enforce_ssl=True,
        minimum_tls_version=1.2,
        removal_policy=removal_policy,
    )
