"""Script mode in TrainingStack: the team's source as a reproducible S3 asset, the `code` channel, the SDK's keys."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from stacks.constructs.training_code import reproducible_tar_gz
from stacks.settings import REPO, Settings, SettingsError
from tests.stacks.cfn_values import pipeline_definitions
from tests.stacks.pipeline.test_pipeline_botocore import OPERATIONS, Substitution, job_steps
from tests.stacks.support import cdk_json_context

SCRIPT = {
    "trainingSourceDir": "examples/script_mode/src",
    "trainingEntryPoint": "train.py",
    "trainingScriptHyperparameters": {"epochs": 20, "learning-rate": 0.0003, "optimizer": "adam"},
}


@pytest.fixture(scope="module")
def script_app(synth_app):
    return synth_app(SCRIPT)


def _training_steps(app):
    definitions = pipeline_definitions(app.template_json["TrainingStack"])
    return definitions, [s for s in job_steps(definitions["jax-llm-training"]) if s["Type"] == "Training"]


def test_training_jobs_get_the_code_channel_and_the_sdk_s_script_mode_hyperparameters(script_app):
    assert script_app.nag_findings == []
    _, steps = _training_steps(script_app)
    assert len(steps) == 4  # spot/on-demand x prepared/tokenized
    for step in steps:
        arguments = step["Arguments"]
        (code,) = [c for c in arguments["InputDataConfig"] if c["ChannelName"] == "code"]
        assert code["InputMode"] == "File"
        # SageMaker puts the object in the channel's directory under its own name (CDK's `<asset hash>.gz`).
        file_name = str(code["DataSource"]["S3DataSource"]["S3Uri"]).rsplit("/", 1)[1]
        assert file_name.endswith(".gz")
        assert arguments["HyperParameters"] == {
            "epochs": "20",
            "learning-rate": "0.0003",
            "optimizer": '"adam"',  # JSON-encoded, as the SDK does
            "sagemaker_program": '"train.py"',
            "sagemaker_submit_directory": json.dumps(f"/opt/ml/input/data/code/{file_name}"),
        }
        assert arguments["EnableNetworkIsolation"] is True


def _assert_valid_requests(definitions: dict) -> None:
    """Every job step's Arguments against botocore's SageMaker model (parameters at their defaults)."""
    from botocore.session import get_session
    from botocore.validate import ParamValidator

    model = get_session().get_service_model("sagemaker")
    for definition in definitions.values():
        substitution = Substitution(definition)
        for step in job_steps(definition):
            operation, name = OPERATIONS[step["Type"]]
            shape = model.operation_model(operation).input_shape
            report = ParamValidator().validate(
                {**name, **substitution.apply(step["Arguments"], shape)}, shape
            )
            assert not report.has_errors(), report.generate_report()
            assert not substitution.problems, substitution.problems


def test_the_script_mode_requests_are_valid_and_the_tuner_still_trains_the_built_in_gpt(script_app):
    definitions, _ = _training_steps(script_app)
    _assert_valid_requests(definitions)
    tuning = [s for s in job_steps(definitions["jax-llm-tuning"]) if s["Type"] == "Tuning"]
    for step in tuning:
        job = step["Arguments"]["TrainingJobDefinition"]
        assert "sagemaker_program" not in job["StaticHyperParameters"]
        assert "code" not in {c["ChannelName"] for c in job["InputDataConfig"]}


def test_the_jobs_may_read_exactly_the_code_object(script_app):
    template = script_app.template_json["TrainingStack"]
    statements = [
        s
        for r in template["Resources"].values()
        if r["Type"] == "AWS::IAM::ManagedPolicy"
        for s in r["Properties"]["PolicyDocument"]["Statement"]
    ]
    (read,) = [s for s in statements if s.get("Sid") == "ReadTrainingCode"]
    (listing,) = [s for s in statements if s.get("Sid") == "ListTrainingCode"]
    assert read["Action"] == "s3:GetObject" and json.dumps(read["Resource"]).endswith('.gz"]]}')
    assert "*" not in json.dumps(read["Resource"])  # the one object, not the asset bucket
    assert listing["Action"] == "s3:ListBucket" and "s3:prefix" in listing["Condition"]["StringEquals"]


def test_the_archive_holds_the_source_and_depends_on_nothing_but_it():
    first, second = (reproducible_tar_gz(REPO / SCRIPT["trainingSourceDir"]) for _ in range(2))
    assert first == second
    with tarfile.open(fileobj=io.BytesIO(first), mode="r:gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert {"train.py", "inference.py"} <= set(members)
    assert all(m.mtime == 0 and m.uid == 0 for m in members.values())


@pytest.mark.parametrize(
    "overrides, key",
    [
        ({"trainingEntryPoint": "train.py"}, "trainingEntryPoint"),  # no source directory
        (
            {"trainingSourceDir": "examples/script_mode/src", "trainingEntryPoint": "missing.py"},
            "trainingEntryPoint",
        ),
        ({"trainingSourceDir": "no/such/dir", "trainingEntryPoint": "train.py"}, "trainingSourceDir"),
        ({"trainingScriptHyperparameters": {"sagemaker_program": "x"}}, "trainingScriptHyperparameters"),
    ],
)
def test_a_wrong_script_setting_stops_synth_naming_the_key(overrides, key):
    with pytest.raises(SettingsError) as error:
        Settings.from_context({**cdk_json_context(), **overrides})
    assert error.value.key == key


def test_without_a_script_nothing_changes():
    settings = Settings.from_context(cdk_json_context())
    assert not settings.script.enabled and settings.script.hyperparameters == {}


def test_the_tuner_tunes_the_script_under_its_own_names_when_told_them(synth_app):
    app = synth_app({**SCRIPT, "trainingScriptTunedNames": {"learning_rate": "learning-rate"}})
    assert app.nag_findings == []
    definitions = pipeline_definitions(app.template_json["TrainingStack"])
    _assert_valid_requests(definitions)
    steps = [s for s in job_steps(definitions["jax-llm-tuning"]) if s["Type"] == "Tuning"]
    assert len(steps) == 4
    for step in steps:
        config, job = (
            step["Arguments"]["HyperParameterTuningJobConfig"],
            step["Arguments"]["TrainingJobDefinition"],
        )
        assert config["ParameterRanges"]["ContinuousParameterRanges"] == [
            {"Name": "learning-rate", "MinValue": "0.0001", "MaxValue": "0.001", "ScalingType": "Logarithmic"}
        ]
        assert (
            config["ParameterRanges"]["IntegerParameterRanges"] == []
        )  # warmup: no name given, not searched
        static = job["StaticHyperParameters"]
        assert "learning-rate" not in static and static["epochs"] == "20"
        # The script cannot be told to keep its checkpoints per trial, so its trials sync none.
        assert "CheckpointConfig" not in job
        assert static["sagemaker_program"] == '"train.py"'
        assert "code" in {c["ChannelName"] for c in job["InputDataConfig"]}


def test_tuned_names_must_name_what_the_tuner_searches():
    with pytest.raises(SettingsError) as error:
        Settings.from_context(
            {**cdk_json_context(), **SCRIPT, "trainingScriptTunedNames": {"lr": "learning-rate"}}
        )
    assert error.value.key == "trainingScriptTunedNames"
