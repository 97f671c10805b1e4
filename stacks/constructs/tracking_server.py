"""The SageMaker managed MLflow tracking server the pipelines' runs are recorded in; what logging may do."""

from __future__ import annotations

from aws_cdk import Aws, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from stacks.nag import acknowledge, wildcard_resource
from stacks.settings import TrackingSettings

ARTIFACT_PREFIX = "mlflow"  # in the artifacts bucket: the server's artifact store
# The MLflow calls `python -m jax_llm track` and the trainer make (MlflowClient: get or create the
# experiment, find or create the tuning job's parent run, create the run, log batches of params and
# metrics, read the run for its artifact location, end it). Artifacts go straight to S3.
LOGGING_ACTIONS = [
    "sagemaker-mlflow:CreateExperiment",
    "sagemaker-mlflow:CreateRun",
    "sagemaker-mlflow:GetExperimentByName",
    "sagemaker-mlflow:GetRun",
    "sagemaker-mlflow:LogBatch",
    "sagemaker-mlflow:SearchRuns",
    "sagemaker-mlflow:UpdateRun",
]
# An MLflow *App* (`mlflow-app/` ARN) authorizes its REST API with sagemaker:CallMlflowAppApi beside the
# sagemaker-mlflow actions, and the sagemaker-mlflow plugin resolves the ARN to the App's URL with
# DescribeMlflowApp (docs/stacks.md cites the pages). A tracking server needs neither.
MLFLOW_APP_ACTIONS = ["sagemaker:CallMlflowAppApi", "sagemaker:DescribeMlflowApp"]


class TrackingServer(Construct):
    """An MLflow tracking server whose artifact store is ``s3://<bucket>/mlflow`` (objects under the
    bucket's KMS key), run as a service role that may use exactly that prefix and the key."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name: str,
        bucket: s3.IBucket,
        key: kms.IKey,
        tracking: TrackingSettings,
    ) -> None:
        super().__init__(scope, construct_id)
        self.role = iam.Role(
            self,
            "Role",
            description="The MLflow tracking server's access to its artifact store",
            assumed_by=iam.ServicePrincipal(
                "sagemaker.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}}
            ),
        )
        objects = bucket.arn_for_objects(f"{ARTIFACT_PREFIX}/*")
        policy = iam.ManagedPolicy(
            self,
            "Policy",
            roles=[self.role],
            statements=[
                iam.PolicyStatement(
                    sid="ListArtifactStore",
                    actions=["s3:GetBucketLocation", "s3:ListBucket"],
                    resources=[bucket.bucket_arn],
                ),
                iam.PolicyStatement(
                    sid="ReadWriteArtifacts",
                    actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                    resources=[objects],
                ),
                iam.PolicyStatement(
                    sid="UseProjectKey",
                    actions=["kms:Decrypt", "kms:GenerateDataKey"],
                    resources=[key.key_arn],
                ),
            ],
        )
        acknowledge(
            policy,
            f"AwsSolutions-IAM5[{wildcard_resource(self, objects)}]",
            "The server names its artifacts per run at run time, all under its own prefix.",
        )
        self.server = sagemaker.CfnMlflowTrackingServer(
            self,
            "Server",
            tracking_server_name=name,
            artifact_store_uri=f"s3://{bucket.bucket_name}/{ARTIFACT_PREFIX}",
            role_arn=self.role.role_arn,
            tracking_server_size=tracking.server_size,
            automatic_model_registration=False,
        )  # the Model Registry is the pipelines' gate, not MLflow's
        self.server.node.add_dependency(policy)
        self.arn: str = self.server.attr_tracking_server_arn


def ui_command(name: str | None, arn: str) -> str:
    """The AWS CLI command that prints a presigned URL of the MLflow UI (valid 5 minutes): for the tracking
    server `name` the stack creates, or for an existing server or MLflow app by its ARN (a plain string)."""
    query = "--query AuthorizedUrl --output text"
    if name is None and ":mlflow-app/" in arn:
        return f"aws sagemaker create-presigned-mlflow-app-url --arn {arn} {query}"
    name = name or arn.rsplit("/", 1)[-1]
    return f"aws sagemaker create-presigned-mlflow-tracking-server-url --tracking-server-name {name} {query}"


def grant_logging(policy: iam.ManagedPolicy, tracking_arn: str) -> None:
    """What the execution role needs to log runs to ``tracking_arn``: the MLflow calls on that one server
    (and, for an MLflow App, its API gate and Describe), and listing a tuning job's trials (their outputs
    it already reads in the artifacts bucket)."""
    tuning_jobs = Stack.of(policy).format_arn(
        service="sagemaker", resource="hyper-parameter-tuning-job", resource_name="*"
    )
    if ":mlflow-app/" in tracking_arn:  # a plain string: only an existing App is named by ARN
        policy.add_statements(
            iam.PolicyStatement(sid="MlflowAppApi", actions=MLFLOW_APP_ACTIONS, resources=[tracking_arn])
        )
    policy.add_statements(
        iam.PolicyStatement(sid="MlflowLogRuns", actions=LOGGING_ACTIONS, resources=[tracking_arn]),
        iam.PolicyStatement(
            sid="ListTuningTrials",
            resources=[tuning_jobs],
            actions=["sagemaker:ListTrainingJobsForHyperParameterTuningJob"],
        ),
    )
    acknowledge(
        policy,
        f"AwsSolutions-IAM5[{wildcard_resource(policy, tuning_jobs)}]",
        "SageMaker Pipelines generates tuning job names with no fixed prefix; listing a tuning job's "
        "trials reads only their names and statuses.",
    )
