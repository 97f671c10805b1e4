"""The pipeline role and the deploy-time trigger may make every call they make, and nothing beyond.

The calls the pipeline role must be able to make are derived from the synthesized definitions (each
step type's create/describe/stop calls and passing the step's RoleArn), with job names shaped as
SageMaker Pipelines generates them; the calls that must be denied are the nearest mistakes.
"""

from __future__ import annotations

import json

import pytest

from tests.stacks.cfn_values import ACCOUNT, REGION, TemplateValues, resources_of_type, walk_steps
from tests.stacks.iam_evaluation import RolePolicies

SAGEMAKER = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}"
TO_SAGEMAKER = {"iam:PassedToService": "sagemaker.amazonaws.com"}
# Resource names as SageMaker Pipelines generates them for an execution (ARNs carry names in lower case).
PROCESSING_JOB = f"{SAGEMAKER}:processing-job/pipelines-7k2m9x0q1w3e-prepare-a1b2c3d4e5"
TRAINING_JOB = f"{SAGEMAKER}:training-job/pipelines-7k2m9x0q1w3e-trainspot-a1b2c3d4e5"
TUNING_JOB = f"{SAGEMAKER}:hyper-parameter-tuning-job/7k2m9x0q1w3e-tunespot-a1b2c3d4"
STEP_CALLS = {
    "Processing": [
        ("sagemaker:CreateProcessingJob", PROCESSING_JOB),
        ("sagemaker:DescribeProcessingJob", PROCESSING_JOB),
        ("sagemaker:StopProcessingJob", PROCESSING_JOB),
        ("sagemaker:AddTags", PROCESSING_JOB),
    ],
    "Training": [
        ("sagemaker:CreateTrainingJob", TRAINING_JOB),
        ("sagemaker:DescribeTrainingJob", TRAINING_JOB),
        ("sagemaker:StopTrainingJob", TRAINING_JOB),
        ("sagemaker:AddTags", TRAINING_JOB),
    ],
    "Tuning": [
        ("sagemaker:CreateHyperParameterTuningJob", TUNING_JOB),
        ("sagemaker:DescribeHyperParameterTuningJob", TUNING_JOB),
        ("sagemaker:StopHyperParameterTuningJob", TUNING_JOB),
        ("sagemaker:ListTrainingJobsForHyperParameterTuningJob", TUNING_JOB),
        ("sagemaker:AddTags", TUNING_JOB),
    ],
}


@pytest.fixture(scope="module")
def template(synthesized_app):
    return synthesized_app.template_json["TrainingStack"]


@pytest.fixture(scope="module")
def pipeline_role(template):
    """The role both pipelines run as (the same role for both)."""
    pipelines = resources_of_type(template, "AWS::SageMaker::Pipeline").values()
    roles = {json.dumps(p["Properties"]["RoleArn"]) for p in pipelines}
    assert len(roles) == 1
    logical_id = json.loads(roles.pop())["Fn::GetAtt"][0]
    return logical_id, RolePolicies.of(template, logical_id)


@pytest.fixture(scope="module")
def trigger(template):
    """(the trigger's StartPipelineExecution call, its provider function's role policies)."""
    (resource,) = resources_of_type(template, "Custom::AWS").values()
    values = TemplateValues(template)
    function_id = resource["Properties"]["ServiceToken"]["Fn::GetAtt"][0]
    role_id = template["Resources"][function_id]["Properties"]["Role"]["Fn::GetAtt"][0]
    return json.loads(values.resolve(resource["Properties"]["Create"])), RolePolicies.of(template, role_id)


def pipeline_calls(definitions: dict) -> list[tuple[str, str, dict]]:
    """(action, resource, context) of every call SageMaker Pipelines makes with the pipeline role."""
    calls = []
    for definition in definitions.values():
        for step in walk_steps(definition["Steps"]):
            args = step.get("Arguments", {})
            calls += [(action, arn, {}) for action, arn in STEP_CALLS.get(step["Type"], [])]
            role = args.get("RoleArn") or args.get("TrainingJobDefinition", {}).get("RoleArn")
            if role:
                calls.append(("iam:PassRole", role, TO_SAGEMAKER))
            if step["Type"] == "RegisterModel":
                group = args["ModelPackageGroupName"]
                package = f"{SAGEMAKER}:model-package/{group}/7"
                calls += [
                    ("sagemaker:CreateModelPackage", f"{SAGEMAKER}:model-package-group/{group}", {}),
                    ("sagemaker:CreateModelPackage", package, {}),
                    ("sagemaker:DescribeModelPackage", package, {}),
                    ("sagemaker:AddTags", package, {}),
                ]
    return calls


def test_the_pipeline_role_may_make_every_call_of_both_pipelines(definitions, pipeline_role):
    _, policies = pipeline_role
    calls = pipeline_calls(definitions)
    assert {c[0] for c in calls} >= {
        "sagemaker:CreateProcessingJob",
        "sagemaker:CreateTrainingJob",
        "sagemaker:CreateHyperParameterTuningJob",
        "sagemaker:CreateModelPackage",
        "iam:PassRole",
    }
    denied = [c for c in calls if not policies.allows(*c)]
    assert not denied


def test_the_pipeline_role_is_denied_everything_else(definitions, pipeline_role, template):
    role_id, policies = pipeline_role
    execution_role = next(
        s for d in definitions.values() for s in walk_steps(d["Steps"]) if s["Type"] == "Training"
    )["Arguments"]["RoleArn"]
    own_arn = TemplateValues(template).arn(role_id)
    group = next(
        s for d in definitions.values() for s in walk_steps(d["Steps"]) if s["Type"] == "RegisterModel"
    )["Arguments"]["ModelPackageGroupName"]
    must_deny = [
        ("iam:PassRole", execution_role, {"iam:PassedToService": "ec2.amazonaws.com"}),  # to another service
        ("iam:PassRole", execution_role, {}),  # without saying to whom
        ("iam:PassRole", own_arn, TO_SAGEMAKER),  # its own, more powerful role
        ("sagemaker:CreateTrainingJob", f"{SAGEMAKER}:training-job/my-own-job", {}),  # not a pipeline job
        ("sagemaker:CreateProcessingJob", f"{SAGEMAKER}:processing-job/adhoc-job", {}),
        ("sagemaker:CreateModelPackage", f"{SAGEMAKER}:model-package/other-group/1", {}),
        ("sagemaker:UpdateModelPackage", f"{SAGEMAKER}:model-package/{group}/7", {}),  # approval is a human's
        ("sagemaker:DeleteModelPackage", f"{SAGEMAKER}:model-package/{group}/7", {}),
        ("sagemaker:CreateEndpoint", f"{SAGEMAKER}:endpoint/jax-llm", {}),
        ("sagemaker:CreateModel", f"{SAGEMAKER}:model/pipelines-x", {}),
        ("sagemaker:StartPipelineExecution", f"{SAGEMAKER}:pipeline/jax-llm-training", {}),
        ("s3:GetObject", "arn:aws:s3:::any-bucket/data.txt", {}),  # the jobs read data, as the execution role
        ("kms:Decrypt", f"arn:aws:kms:{REGION}:{ACCOUNT}:key/any", {}),
    ]
    allowed = [c for c in must_deny if policies.allows(*c)]
    assert not allowed


def test_the_trigger_starts_the_training_pipeline_and_may_do_nothing_else(trigger, template):
    call, policies = trigger
    assert call["action"] == "startPipelineExecution"
    pipeline_arn = f"{SAGEMAKER}:pipeline/{call['parameters']['PipelineName'].lower()}"
    log_groups = resources_of_type(template, "AWS::Logs::LogGroup")
    (log_group,) = [
        TemplateValues(template).arn(lid) for lid in log_groups if lid.startswith("StartTraining")
    ]
    log_stream = log_group.removesuffix("*") + "log-stream:2026/11/22/[$LATEST]abc"
    for needed in [
        ("sagemaker:StartPipelineExecution", pipeline_arn),
        ("logs:CreateLogStream", log_stream),
        ("logs:PutLogEvents", log_stream),
    ]:
        assert policies.allows(*needed), needed
    assert policies.actions() == {
        "sagemaker:StartPipelineExecution",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
    }
    for denied in [
        ("sagemaker:StartPipelineExecution", f"{SAGEMAKER}:pipeline/jax-llm-tuning"),
        ("sagemaker:StartPipelineExecution", f"{SAGEMAKER}:pipeline/someone-elses"),
        ("sagemaker:StopPipelineExecution", pipeline_arn),
        ("sagemaker:CreateTrainingJob", TRAINING_JOB),
        ("logs:PutLogEvents", f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:other:log-stream:x"),
    ]:
        assert not policies.allows(*denied), denied


def test_both_roles_are_assumable_only_by_their_service(pipeline_role, trigger, template):
    role_id, _ = pipeline_role
    trust = template["Resources"][role_id]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert [s["Principal"] for s in trust] == [{"Service": "sagemaker.amazonaws.com"}]
    assert all("aws:SourceAccount" in s["Condition"]["StringEquals"] for s in trust)
