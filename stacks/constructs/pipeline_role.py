"""The role our pipelines run as: it starts the jobs, which themselves run as the execution role."""

from __future__ import annotations

from aws_cdk import Aws, Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from stacks.nag import acknowledge

# SageMaker Pipelines names the jobs it starts "pipelines-<execution id>-<step name>-<suffix>". Tuning
# job names (32 characters at most) carry no such prefix: they cannot be scoped further than the account.
PIPELINE_JOB_PREFIX = "pipelines-"


class PipelineRole(Construct):
    """An IAM role trusted by SageMaker in this account that may run exactly our pipelines' steps.

    It may pass ``execution_role_arn`` to SageMaker (and nothing else to anyone), create, describe and
    stop processing, training and tuning jobs, and create and describe model packages in the group
    ``model_package_group_name``. It reads no data itself: the jobs do, as the execution role.
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, execution_role_arn: str, model_package_group_name: str
    ) -> None:
        super().__init__(scope, construct_id)
        self.role = iam.Role(
            self,
            "Role",
            description="SageMaker Pipelines role for the JAX LLM training and tuning pipelines",
            assumed_by=iam.ServicePrincipal(
                "sagemaker.amazonaws.com",
                conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
            ),
        )
        stack = Stack.of(self)

        def arn(resource: str, name: str) -> str:
            return stack.format_arn(service="sagemaker", resource=resource, resource_name=name)

        processing_jobs = arn("processing-job", f"{PIPELINE_JOB_PREFIX}*")
        training_jobs = arn("training-job", f"{PIPELINE_JOB_PREFIX}*")
        tuning_jobs = arn("hyper-parameter-tuning-job", "*")
        group = model_package_group_name.lower()  # SageMaker lower-cases names in ARNs
        package_group = arn("model-package-group", group)
        packages = arn("model-package", f"{group}/*")
        statements = [
            iam.PolicyStatement(
                sid="PassExecutionRoleToSageMaker",
                actions=["iam:PassRole"],
                resources=[execution_role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
            ),
            iam.PolicyStatement(
                sid="ProcessingJobs",
                resources=[processing_jobs],
                actions=[
                    "sagemaker:CreateProcessingJob",
                    "sagemaker:DescribeProcessingJob",
                    "sagemaker:StopProcessingJob",
                ],
            ),
            iam.PolicyStatement(
                sid="TrainingJobs",
                resources=[training_jobs],
                actions=[
                    "sagemaker:CreateTrainingJob",
                    "sagemaker:DescribeTrainingJob",
                    "sagemaker:StopTrainingJob",
                ],
            ),
            iam.PolicyStatement(
                sid="TuningJobs",
                resources=[tuning_jobs],
                actions=[
                    "sagemaker:CreateHyperParameterTuningJob",
                    "sagemaker:DescribeHyperParameterTuningJob",
                    "sagemaker:StopHyperParameterTuningJob",
                    "sagemaker:ListTrainingJobsForHyperParameterTuningJob",
                ],
            ),
            iam.PolicyStatement(
                sid="RegisterModelPackages",
                resources=[package_group, packages],
                actions=["sagemaker:CreateModelPackage", "sagemaker:DescribeModelPackage"],
            ),
            # SageMaker Pipelines tags the jobs and packages it creates with the execution that made them.
            iam.PolicyStatement(
                sid="TagWhatThePipelineCreates",
                actions=["sagemaker:AddTags"],
                resources=[processing_jobs, training_jobs, tuning_jobs, packages],
            ),
        ]
        self.policy = iam.ManagedPolicy(self, "Policy", statements=statements, roles=[self.role])
        acknowledge(
            self.policy,
            f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:"
            f"<AWS::AccountId>:processing-job/{PIPELINE_JOB_PREFIX}*]",
            "Job names are generated per execution by SageMaker Pipelines; all share this prefix.",
        )
        acknowledge(
            self.policy,
            f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:"
            f"<AWS::AccountId>:training-job/{PIPELINE_JOB_PREFIX}*]",
            "Job names are generated per execution by SageMaker Pipelines; all share this prefix.",
        )
        acknowledge(
            self.policy,
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:"
            "<AWS::AccountId>:hyper-parameter-tuning-job/*]",
            "SageMaker Pipelines generates tuning job names with no fixed prefix (32 chars max).",
        )
        acknowledge(
            self.policy,
            f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:"
            f"<AWS::AccountId>:model-package/{group}/*]",
            "Model package versions are numbered by SageMaker within our one group.",
        )
