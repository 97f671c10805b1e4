"""The team's source directory as `sourcedir.tar.gz` in the CDK asset bucket, for script mode.

The SDK uploads `source_dir` the same way; a job with network isolation receives it as the `code` input
channel. The archive is made reproducibly (members sorted, times, owners and the gzip header zeroed), so
its content hash, and with it the training definition, changes exactly when the code does.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import tempfile
from pathlib import Path

from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

SKIPPED = ("__pycache__", ".pyc", ".git")


def reproducible_tar_gz(source_dir: Path) -> bytes:
    """The directory as tar.gz bytes that depend on file names, contents and modes only."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for path in sorted(source_dir.rglob("*")):
            relative = path.relative_to(source_dir)
            if any(part.startswith(SKIPPED) or part.endswith(SKIPPED) for part in relative.parts):
                continue
            info = tar.gettarinfo(str(path), arcname=relative.as_posix())
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            info.mode = 0o755 if path.is_dir() or info.mode & 0o100 else 0o644
            if path.is_file():
                with open(path, "rb") as data:
                    tar.addfile(info, data)
            else:
                tar.addfile(info)
    return buffer.getvalue()


class TrainingCode(Construct):
    """`sourcedir.tar.gz` of `source_dir` as an S3 asset; `reader` (the jobs' policy) may list and get exactly
    that object, nothing else of the asset bucket; `s3_uri` names it."""

    def __init__(
        self, scope: Construct, construct_id: str, *, source_dir: Path, reader: iam.ManagedPolicy
    ) -> None:
        super().__init__(scope, construct_id)
        data = reproducible_tar_gz(source_dir)
        staged = Path(tempfile.gettempdir()) / "jax-llm-sourcedir" / hashlib.sha256(data).hexdigest()
        staged.mkdir(parents=True, exist_ok=True)
        (staged / "sourcedir.tar.gz").write_bytes(data)
        self.asset = s3_assets.Asset(self, "Asset", path=str(staged / "sourcedir.tar.gz"))
        key = self.asset.s3_object_key
        reader.add_statements(
            iam.PolicyStatement(
                sid="ReadTrainingCode",
                actions=["s3:GetObject"],
                resources=[self.asset.bucket.arn_for_objects(key)],
            ),
            # An S3Prefix channel lists its prefix first.
            iam.PolicyStatement(
                sid="ListTrainingCode",
                actions=["s3:ListBucket"],
                resources=[self.asset.bucket.bucket_arn],
                conditions={"StringEquals": {"s3:prefix": [key]}},
            ),
        )
        self.s3_uri: str = self.asset.s3_object_url
        # SageMaker names the channel's file after the object: `<asset hash>.gz`, not sourcedir.tar.gz.
        self.file_name: str = key
