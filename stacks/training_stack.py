"""TrainingStack: the image, storage, encryption, execution role and Model Registry for JAX LLM training."""

from __future__ import annotations

from aws_cdk import CfnOutput, RemovalPolicy, Stack
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks import names
from stacks.constructs.buckets import ProjectBuckets
from stacks.constructs.encryption import EncryptionKey
from stacks.constructs.execution_role import SageMakerExecutionRole
from stacks.constructs.image_repository import ImageRepository
from stacks.constructs.model_registry import ModelRegistry
from stacks.constructs.tracking_server import TrackingServer, grant_logging, ui_command
from stacks.constructs.training_code import TrainingCode
from stacks.constructs.training_pipeline import TrainingPipelines
from stacks.constructs.training_trigger import TrainingTrigger
from stacks.pipeline.resources import PipelineResources
from stacks.settings import Settings


class TrainingStack(Stack):
    """Everything SageMaker training needs; later stacks read the public attributes set here."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: Settings, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.settings = settings
        removal = (
            RemovalPolicy.DESTROY if settings.project.removal_policy == "destroy" else RemovalPolicy.RETAIN
        )

        self.key: kms.Key = EncryptionKey(
            self,
            "Encryption",
            alias=f"alias/{settings.project.name}",
            storage=settings.storage,
            removal_policy=removal,
        ).key

        buckets = ProjectBuckets(
            self, "Buckets", key=self.key, storage=settings.storage, removal_policy=removal
        )
        self.artifacts_bucket: s3.IBucket = buckets.artifacts_bucket
        self.data_bucket: s3.IBucket = buckets.data_bucket
        self.access_logs_bucket: s3.IBucket = buckets.access_logs_bucket

        image = ImageRepository(
            self,
            "Image",
            repository_name=settings.project.name,
            key=self.key,
            image=settings.image,
            storage=settings.storage,
            removal_policy=removal,
        )
        self.repository: ecr.Repository = image.repository
        self.image_tag: str = image.image_tag
        self.image_uri: str = image.image_uri
        # Resources that start containers from image_uri depend on this: the copy must have finished.
        self.image_deployment: Construct = image.deployment

        role = SageMakerExecutionRole(
            self,
            "ExecutionRole",
            repository=self.repository,
            key=self.key,
            read_write_buckets=[self.artifacts_bucket],
            read_only_buckets=[self.data_bucket],
        )
        self.execution_role: iam.Role = role.role
        self.execution_role_policy: iam.ManagedPolicy = role.policy

        registry = ModelRegistry(self, "ModelRegistry", registry=settings.registry, removal_policy=removal)
        self.model_package_group_name: str = registry.group_name
        self.model_package_group_arn: str = registry.group_arn

        self.tracking_arn: str | None = None  # where the pipelines' runs are tracked (MLflow); None: nowhere
        server_name = f"{settings.project.name}-mlflow" if settings.tracking.mode == "create" else None
        if server_name is not None:
            self.tracking_arn = TrackingServer(
                self,
                "Tracking",
                name=server_name,
                bucket=self.artifacts_bucket,
                key=self.key,
                tracking=settings.tracking,
            ).arn
        elif settings.tracking.mode == "existing":
            self.tracking_arn = settings.tracking.server_arn
        if self.tracking_arn is not None:
            grant_logging(self.execution_role_policy, self.tracking_arn)

        code = None
        if settings.script.enabled:  # the team's own training script, sent as the SDK sends source_dir
            code = TrainingCode(
                self, "TrainingCode", source_dir=settings.script.path, reader=self.execution_role_policy
            )
        pipelines = TrainingPipelines(
            self,
            "Pipelines",
            project_name=settings.project.name,
            pipeline=settings.pipeline,
            tuning=settings.tuning,
            script=settings.script,
            resources=PipelineResources(
                image_uri=self.image_uri,
                execution_role_arn=self.execution_role.role_arn,
                artifacts_bucket_name=self.artifacts_bucket.bucket_name,
                data_bucket_name=self.data_bucket.bucket_name,
                kms_key_arn=self.key.key_arn,
                model_package_group_name=self.model_package_group_name,
                training_code_uri=code and code.s3_uri,
                training_code_file=code and code.file_name,
                tracking_arn=self.tracking_arn,
                image_tag=self.image_tag,
            ),
        )
        self.pipelines = pipelines
        if settings.pipeline.start_training:
            trigger = TrainingTrigger(
                self,
                "StartTraining",
                pipeline_name=pipelines.training_pipeline_name,
                pipeline_arn=pipelines.training_pipeline_arn,
                definition=pipelines.training_definition,
                key=self.key,
                storage=settings.storage,
                depends_on=[
                    pipelines.training,
                    pipelines.pipeline_role.policy,
                    self.execution_role_policy,
                    self.image_deployment,
                ],
            )
            CfnOutput(
                self,
                names.TRAINING_EXECUTION_OUTPUT,
                value=trigger.execution_arn,
                description="The pipeline execution the latest change of the training definition started",
            )

        for output_id, value, description in [
            (names.IMAGE_OUTPUT, self.image_uri, "The jax-llm image at its content tag"),
            (names.EXECUTION_ROLE_OUTPUT, self.execution_role.role_arn, "SageMaker execution role"),
            (
                names.ARTIFACTS_BUCKET_OUTPUT,
                self.artifacts_bucket.bucket_name,
                "Models, checkpoints, pipeline files",
            ),
            (names.DATA_BUCKET_OUTPUT, self.data_bucket.bucket_name, "Training data"),
            (names.KMS_KEY_OUTPUT, self.key.key_arn, "KMS key for S3 objects and SageMaker volumes"),
            (names.GROUP_OUTPUT, self.model_package_group_name, "Model Registry group"),
            (
                names.TRAINING_PIPELINE_OUTPUT,
                pipelines.training_pipeline_name,
                "Prepare, train, gate, register",
            ),
            (
                names.TUNING_PIPELINE_OUTPUT,
                pipelines.tuning_pipeline_name,
                "Tune, gate, register the best model",
            ),
            (
                names.PIPELINE_ROLE_OUTPUT,
                pipelines.pipeline_role.role.role_arn,
                "The role the pipelines run as",
            ),
        ]:
            CfnOutput(self, output_id, value=value, description=description)
        if self.tracking_arn is not None:
            CfnOutput(
                self,
                names.TRACKING_OUTPUT,
                value=self.tracking_arn,
                description="MLflow tracking server of every training and tuning run",
            )
            CfnOutput(
                self,
                names.TRACKING_UI_OUTPUT,
                value=ui_command(server_name, settings.tracking.server_arn),
                description="Prints a URL of the MLflow UI (open it within 5 minutes)",
            )
