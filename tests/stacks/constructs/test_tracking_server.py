"""Experiment tracking in TrainingStack: the MLflow tracking server, who may log to it, the Track steps."""

from __future__ import annotations

import json

import pytest

from stacks.settings import Settings, SettingsError
from tests.stacks.cfn_values import ACCOUNT, REGION, TemplateValues, resources_of_type, walk_steps
from tests.stacks.iam_evaluation import RolePolicies
from tests.stacks.settings.test_settings import settings_with

SERVER_KIND = "AWS::SageMaker::MlflowTrackingServer"
SERVER_ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:mlflow-tracking-server/jax-llm-mlflow"
EXISTING_ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:mlflow-tracking-server/team-mlflow"
APP_ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:mlflow-app/app-6x2kq9w4zr7t"
TUNING_JOB = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:hyper-parameter-tuning-job/7k2m9x0q1w3e-tunespot-a1b2c3d4"


@pytest.fixture(scope="module")
def template(synthesized_app):
    return synthesized_app.template_json["TrainingStack"]


def _execution_role(template: dict) -> tuple[str, RolePolicies]:
    definitions = _definitions(template)
    step = next(s for d in definitions.values() for s in walk_steps(d["Steps"]) if s["Type"] == "Training")
    arn = step["Arguments"]["RoleArn"]
    logical_id = next(
        lid
        for lid in resources_of_type(template, "AWS::IAM::Role")
        if TemplateValues(template).arn(lid) == arn
    )
    return arn, RolePolicies.of(template, logical_id)


def _definitions(template: dict) -> dict[str, dict]:
    from tests.stacks.cfn_values import pipeline_definitions

    return pipeline_definitions(template)


def _track_steps(template: dict) -> dict[str, list[dict]]:
    return {
        name: [s for s in walk_steps(d["Steps"]) if s["Name"].startswith("Track")]
        for name, d in _definitions(template).items()
    }


def test_the_stack_creates_a_tracking_server_storing_artifacts_in_the_artifacts_bucket(
    template, synthesized_app
):
    (server,) = resources_of_type(template, SERVER_KIND).values()
    values = TemplateValues(template)
    props = values.resolve(server["Properties"])
    stack = synthesized_app.stacks["TrainingStack"]
    artifacts = stack.resolve(stack.artifacts_bucket.bucket_name)["Ref"]
    assert props["ArtifactStoreUri"] == f"s3://{values.name(artifacts)}/mlflow"
    assert props["TrackingServerName"] == "jax-llm-mlflow" and props["TrackingServerSize"] == "Small"
    assert props["AutomaticModelRegistration"] is False  # the pipelines' gate registers models, not MLflow
    # The bucket encrypts every object under the project's key (SSE-KMS by default): the artifacts too.
    encryption = template["Resources"][artifacts]["Properties"]["BucketEncryption"]
    rule = encryption["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert rule["SSEAlgorithm"] == "aws:kms" and "Fn::GetAtt" in rule["KMSMasterKeyID"]

    # The server's own role: the artifact prefix and the key, nothing else, no wildcard action.
    role_id = server["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    trust = template["Resources"][role_id]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert [s["Principal"] for s in trust] == [{"Service": "sagemaker.amazonaws.com"}]
    policies = RolePolicies.of(template, role_id)
    bucket = values.arn(artifacts)
    key = values.arn(next(iter(resources_of_type(template, "AWS::KMS::Key"))))
    assert policies.actions() == {
        "s3:GetBucketLocation",
        "s3:ListBucket",
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
        "kms:Decrypt",
        "kms:GenerateDataKey",
    }
    for call in [
        ("s3:PutObject", f"{bucket}/mlflow/1/abc/artifacts/loss_curves.png"),
        ("s3:ListBucket", bucket),
        ("kms:GenerateDataKey", key),
    ]:
        assert policies.allows(*call), call
    for call in [
        ("s3:GetObject", f"{bucket}/training/job/output/model.tar.gz"),
        ("s3:PutObject", "arn:aws:s3:::other-bucket/mlflow/x"),
    ]:
        assert not policies.allows(*call), call
    depends = server.get("DependsOn", [])
    assert any(template["Resources"][d]["Type"] == "AWS::IAM::ManagedPolicy" for d in depends)


def test_the_execution_role_may_log_runs_to_that_server_and_nothing_more_of_mlflow(template):
    _, policies = _execution_role(template)
    for action in (
        "CreateExperiment",
        "GetExperimentByName",
        "CreateRun",
        "GetRun",
        "SearchRuns",
        "LogBatch",
        "UpdateRun",
    ):
        assert policies.allows(f"sagemaker-mlflow:{action}", SERVER_ARN), action
    assert policies.allows("sagemaker:ListTrainingJobsForHyperParameterTuningJob", TUNING_JOB)
    for denied in [
        ("sagemaker-mlflow:LogBatch", EXISTING_ARN),  # another server
        ("sagemaker-mlflow:DeleteExperiment", SERVER_ARN),
        ("sagemaker-mlflow:DeleteRun", SERVER_ARN),
        ("sagemaker-mlflow:CreateRegisteredModel", SERVER_ARN),
        ("sagemaker:DeleteMlflowTrackingServer", SERVER_ARN),
        ("sagemaker:StopHyperParameterTuningJob", TUNING_JOB),
    ]:
        assert not policies.allows(*denied), denied
    assert not any("*" in a for a in policies.actions())


def test_after_each_job_a_track_step_with_network_logs_it_and_the_jobs_stay_isolated(template):
    track = _track_steps(template)
    assert {name: len(steps) for name, steps in track.items()} == {"jax-llm-training": 4, "jax-llm-tuning": 4}
    for pipeline, steps in track.items():
        for step in steps:
            args = step["Arguments"]
            env = args["Environment"]
            assert env["MLFLOW_TRACKING_URI"] == SERVER_ARN and env["MLFLOW_EXPERIMENT_NAME"] == pipeline
            assert env["JAX_LLM_PIPELINE_EXECUTION"] == {"Get": "Execution.PipelineExecutionArn"}
            image = args["AppSpecification"]["ImageUri"]
            assert env["JAX_LLM_IMAGE_TAG"] and image.endswith(f":{env['JAX_LLM_IMAGE_TAG']}")
            assert args["NetworkConfig"]["EnableNetworkIsolation"] is False  # it must reach the server
            command = args["AppSpecification"]["ContainerArguments"]
            job_step = step["Name"].replace("Track", "Train" if pipeline.endswith("training") else "Tune")
            assert command[0] == "track"
            if pipeline.endswith("training"):
                assert command[1:] == [
                    "--model-uri",
                    {"Get": f"Steps.{job_step}.ModelArtifacts.S3ModelArtifacts"},
                    "--job-name",
                    {"Get": f"Steps.{job_step}.TrainingJobName"},
                ]
            else:
                tuning_job = {"Get": f"Steps.{job_step}.HyperParameterTuningJobName"}
                assert command[1:3] == ["--tuning-job", tuning_job]
                assert command[3] == "--output-path" and command[4].endswith("/tuning")
    for definition in _definitions(template).values():
        for step in walk_steps(definition["Steps"]):
            if step["Type"] in ("Training", "Tuning"):
                job = step["Arguments"].get("TrainingJobDefinition", step["Arguments"])
                assert job["EnableNetworkIsolation"] is True
                assert "MLFLOW_TRACKING_URI" not in job["Environment"]  # it could not reach it anyway
            gate_inputs = json.dumps(step["Arguments"]) if step["Type"] == "Condition" else ""
            assert "Steps.Track" not in gate_inputs  # registration never waits on tracking


def test_the_outputs_say_where_the_server_is_and_how_to_open_its_ui(template):
    outputs = template["Outputs"]
    assert TemplateValues(template).resolve(outputs["MlflowTrackingServerArn"]["Value"]) == SERVER_ARN
    assert outputs["MlflowUi"]["Value"] == (
        "aws sagemaker create-presigned-mlflow-tracking-server-url --tracking-server-name jax-llm-mlflow "
        "--query AuthorizedUrl --output text"
    )


def test_an_existing_mlflow_app_also_gets_its_api_gate_and_describe(synth_app):
    """An MLflow App authorizes its REST API with sagemaker:CallMlflowAppApi beside sagemaker-mlflow:*, and
    the client resolves the App's URL with DescribeMlflowApp: without both, every call is refused."""
    app = synth_app({"trackingServer": "existing", "trackingServerArn": APP_ARN})
    _, policies = _execution_role(app.template_json["TrainingStack"])
    assert not app.nag_findings
    for action in ("sagemaker:CallMlflowAppApi", "sagemaker:DescribeMlflowApp", "sagemaker-mlflow:LogBatch"):
        assert policies.allows(action, APP_ARN), action
    other_app = APP_ARN.replace("6x2kq9w4zr7t", "0000otherapp")
    assert not policies.allows("sagemaker:CallMlflowAppApi", other_app)
    assert not policies.allows("sagemaker:UpdateMlflowApp", APP_ARN)


def test_an_existing_server_by_arn_or_none(synth_app):
    existing = synth_app({"trackingServer": "existing", "trackingServerArn": EXISTING_ARN})
    template = existing.template_json["TrainingStack"]
    assert not resources_of_type(template, SERVER_KIND) and not existing.nag_findings
    _, policies = _execution_role(template)
    assert policies.allows("sagemaker-mlflow:LogBatch", EXISTING_ARN)
    assert not policies.allows("sagemaker-mlflow:LogBatch", SERVER_ARN)
    assert not policies.allows("sagemaker:CallMlflowAppApi", EXISTING_ARN)  # a server needs no App gate
    assert all(
        s["Arguments"]["Environment"]["MLFLOW_TRACKING_URI"] == EXISTING_ARN
        for steps in _track_steps(template).values()
        for s in steps
    )
    assert "--tracking-server-name team-mlflow" in template["Outputs"]["MlflowUi"]["Value"]

    none = synth_app({"trackingServer": "none"}).template_json["TrainingStack"]
    assert not resources_of_type(none, SERVER_KIND)
    assert _track_steps(none) == {"jax-llm-training": [], "jax-llm-tuning": []}
    assert not any(a.startswith("sagemaker-mlflow:") for a in _execution_role(none)[1].actions())
    assert "MlflowUi" not in none["Outputs"]


@pytest.mark.parametrize(
    ("overrides", "key", "allowed"),
    [
        ({"trackingServer": "yes"}, "trackingServer", "one of create, existing, none"),
        ({"trackingServer": "existing"}, "trackingServerArn", "an ARN with trackingServer=existing"),
        ({"trackingServerArn": EXISTING_ARN}, "trackingServerArn", "empty otherwise"),
        (
            {"trackingServer": "existing", "trackingServerArn": "arn:aws:s3:::bucket"},
            "trackingServerArn",
            "a SageMaker MLflow ARN",
        ),
        ({"trackingServerSize": "small"}, "trackingServerSize", "one of Small, Medium, Large"),
    ],
)
def test_wrong_tracking_settings_name_the_key(overrides, key, allowed):
    with pytest.raises(SettingsError) as raised:
        settings_with(**overrides)
    assert raised.value.key == key and allowed in str(raised.value)


def test_the_defaults_create_a_small_server():
    tracking = settings_with().tracking
    assert isinstance(settings_with(), Settings) and tracking.enabled
    assert (tracking.mode, tracking.server_arn, tracking.server_size) == ("create", "", "Small")
