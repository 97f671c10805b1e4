"""The training and tuning pipelines and the deploy-time trigger, read from the session's synthesized app.

Behaviour a user would notice: which steps run in what order, what the jobs get (image, data, spot,
limits, encryption, hyperparameters), what is registered and when, and when a deploy starts training.
"""

from __future__ import annotations

import json
import re

import pytest
from aws_cdk import App, Stack

from jax_llm.contract.hyperparameters import FIELDS, parse_hyperparameters
from jax_llm.contract.metrics import METRIC_DEFINITIONS, OBJECTIVE_METRIC
from jax_llm.contract.paths import PER_JOB_CHECKPOINTS_ENV
from stacks.constructs.training_trigger import definition_digest
from stacks.settings import Settings, SettingsError
from tests.stacks.cfn_values import TemplateValues, resources_of_type, walk_steps
from tests.stacks.support import cdk_json_context

STEP_NAME = re.compile(r"^[A-Za-z0-9\-_]{1,64}$")
# The step-name suffixes of the four copies of the job steps (spot or not x prepared here or not).
VARIANTS = ("SpotFromRaw", "OnDemandFromRaw", "SpotFromTokenized", "OnDemandFromTokenized")


@pytest.fixture(scope="module")
def template(synthesized_app):
    return synthesized_app.template_json["TrainingStack"]


@pytest.fixture(scope="module")
def training(definitions):
    return definitions["jax-llm-training"]


@pytest.fixture(scope="module")
def tuning(definitions):
    return definitions["jax-llm-tuning"]


@pytest.fixture(scope="module")
def outputs(template):
    values = TemplateValues(template)
    return {k: values.resolve(v["Value"]) for k, v in template["Outputs"].items()}


def steps_by_name(definition: dict) -> dict[str, dict]:
    return {s["Name"]: s for s in walk_steps(definition["Steps"])}


def references(value, kind: str) -> set[str]:
    """Every ``{"Get": "<kind>.X..."}`` reference in ``value``: X for Parameters, the step name for Steps."""
    text = json.dumps(value)
    return set(re.findall(r'"Get": "' + kind + r"\.([A-Za-z0-9_\-]+)", text))


def test_step_names_are_unique_and_valid_and_references_resolve(definitions):
    for definition in definitions.values():
        steps = walk_steps(definition["Steps"])
        names = [s["Name"] for s in steps]
        assert len(names) == len(set(names)) and all(STEP_NAME.match(n) for n in names)
        declared = {p["Name"] for p in definition["Parameters"]}
        assert references(definition["Steps"], "Parameters") <= declared
        assert references(definition["Steps"], "Steps") <= set(names)
        assert {p["Type"] for p in definition["Parameters"]} <= {"String", "Integer", "Float", "Boolean"}


def test_each_run_prepares_or_not_then_trains_on_spot_or_not_then_gates_on_val_loss(training):
    steps = steps_by_name(training)
    (top,) = training["Steps"]
    assert top["Name"] == "CheckPrepareData"
    assert top["Arguments"]["Conditions"] == [
        {"Type": "Equals", "LeftValue": {"Get": "Parameters.PrepareData"}, "RightValue": True}
    ]
    assert [s["Name"] for s in top["Arguments"]["IfSteps"]] == ["Prepare", "CheckUseSpotFromRaw"]
    assert [s["Name"] for s in top["Arguments"]["ElseSteps"]] == ["CheckUseSpotFromTokenized"]
    for data in ("FromRaw", "FromTokenized"):
        switch = steps[f"CheckUseSpot{data}"]["Arguments"]
        assert switch["Conditions"] == [
            {"Type": "Equals", "LeftValue": {"Get": "Parameters.UseSpotInstances"}, "RightValue": True}
        ]
        on_demand = [s["Name"] for s in switch["ElseSteps"]]
        assert on_demand == [f"TrainOnDemand{data}", f"TrackOnDemand{data}", f"CheckValLossOnDemand{data}"]
        (wait_check,) = switch["IfSteps"]
        assert [s["Name"] for s in wait_check["Arguments"]["IfSteps"]] == [
            f"TrainSpot{data}",
            f"TrackSpot{data}",
            f"CheckValLossSpot{data}",
        ]
        assert wait_check["Arguments"]["ElseSteps"][0]["Type"] == "Fail"
    for variant in VARIANTS:
        train = steps[f"Train{variant}"]
        if variant.endswith("FromRaw"):
            # Training reads the shards Prepare wrote: a data dependency, so it waits for Prepare.
            assert references(train["Arguments"]["InputDataConfig"], "Steps") == {"Prepare"}
        else:
            assert references(train["Arguments"]["InputDataConfig"], "Steps") == set()
            assert references(train["Arguments"]["InputDataConfig"], "Parameters") == {
                "TrainDataUri",
                "ValidationDataUri",
                "TokenizerUri",
            }
        gate = steps[f"CheckValLoss{variant}"]["Arguments"]
        assert gate["Conditions"] == [
            {
                "Type": "LessThanOrEqualTo",
                "LeftValue": {"Get": f"Steps.Train{variant}.FinalMetricDataList['{OBJECTIVE_METRIC}'].Value"},
                "RightValue": {"Get": "Parameters.MaxValLoss"},
            }
        ]
        assert [s["Type"] for s in gate["IfSteps"]] == ["RegisterModel"]
        assert [s["Type"] for s in gate["ElseSteps"]] == ["Fail"]
        message = json.dumps(gate["ElseSteps"][0]["Arguments"]["ErrorMessage"])
        assert "MaxValLoss" in message and "not registered" in message


def test_the_job_copies_differ_only_in_spot_wait_and_data_source(training):
    steps = steps_by_name(training)
    spot, on_demand = steps["TrainSpotFromRaw"]["Arguments"], steps["TrainOnDemandFromRaw"]["Arguments"]
    assert spot["EnableManagedSpotTraining"] is True and on_demand["EnableManagedSpotTraining"] is False
    assert spot["StoppingCondition"] == {
        "MaxRuntimeInSeconds": {"Get": "Parameters.MaxRuntimeSeconds"},
        "MaxWaitTimeInSeconds": {"Get": "Parameters.MaxWaitSeconds"},
    }
    # SageMaker rejects MaxWaitTimeInSeconds without managed spot.
    assert on_demand["StoppingCondition"] == {"MaxRuntimeInSeconds": {"Get": "Parameters.MaxRuntimeSeconds"}}
    strip = {"EnableManagedSpotTraining", "StoppingCondition"}
    assert {k: v for k, v in spot.items() if k not in strip} == {
        k: v for k, v in on_demand.items() if k not in strip
    }
    defaults = {p["Name"]: p["DefaultValue"] for p in training["Parameters"]}
    assert defaults["MaxWaitSeconds"] > defaults["MaxRuntimeSeconds"]
    tokenized = steps["TrainSpotFromTokenized"]["Arguments"]
    assert {k: v for k, v in spot.items() if k != "InputDataConfig"} == {
        k: v for k, v in tokenized.items() if k != "InputDataConfig"
    }


def test_the_training_job_is_our_image_on_gpus_encrypted_isolated_and_checkpointed(training, outputs):
    args = steps_by_name(training)["TrainSpotFromRaw"]["Arguments"]
    defaults = {p["Name"]: p["DefaultValue"] for p in training["Parameters"]}
    assert args["AlgorithmSpecification"] == {
        "TrainingImage": outputs["ImageUri"],
        "TrainingInputMode": "FastFile",
        "MetricDefinitions": METRIC_DEFINITIONS,
    }
    # Our repository at the content tag (the image asset's hash).
    image = re.compile(r"\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com/jax-llm:[0-9a-f]{64}")
    assert image.fullmatch(outputs["ImageUri"])
    assert args["RoleArn"] == outputs["ExecutionRoleArn"]
    assert (defaults["TrainingInstanceType"], defaults["TrainingInstanceCount"]) == ("ml.p4de.24xlarge", 4)
    assert args["ResourceConfig"]["InstanceType"] == {"Get": "Parameters.TrainingInstanceType"}
    assert args["ResourceConfig"]["InstanceCount"] == {"Get": "Parameters.TrainingInstanceCount"}
    key = outputs["KmsKeyArn"]
    assert args["ResourceConfig"]["VolumeKmsKeyId"] == args["OutputDataConfig"]["KmsKeyId"] == key
    assert args["EnableNetworkIsolation"] is True and args["EnableInterContainerTrafficEncryption"] is True
    assert {c["ChannelName"] for c in args["InputDataConfig"]} == {"train", "validation", "tokenizer"}
    checkpoint = args["CheckpointConfig"]
    assert checkpoint["LocalPath"] == "/opt/ml/checkpoints"
    assert checkpoint["S3Uri"]["Std:Join"] == {
        "On": "/",
        "Values": [
            f"s3://{outputs['ArtifactsBucketName']}/checkpoints",
            {"Get": "Execution.PipelineExecutionId"},
            "",
        ],
    }
    assert {"XLA_PYTHON_CLIENT_MEM_FRACTION", "NCCL_DEBUG"} <= args["Environment"].keys()
    assert args["Environment"]["FI_PROVIDER"] == "efa"
    capacity = [
        r
        for r in steps_by_name(training)["TrainSpotFromRaw"]["RetryPolicies"]
        if r["ExceptionType"] == ["SageMaker.CAPACITY_ERROR"]
    ]
    assert capacity and capacity[0]["MaxAttempts"] >= 1


def test_every_hyperparameter_is_a_string_parameter_the_trainer_accepts(training):
    args = steps_by_name(training)["TrainOnDemandFromTokenized"]["Arguments"]
    assert args["HyperParameters"] == {name: {"Get": f"Parameters.{name}"} for name in FIELDS}
    defaults = {p["Name"]: p for p in training["Parameters"]}
    raw = {name: defaults[name]["DefaultValue"] for name in FIELDS}
    assert all(defaults[name]["Type"] == "String" for name in FIELDS)
    config = parse_hyperparameters(raw)  # what the job would receive parses without error
    assert (config.preset, config.fsdp) == ("1.3b", True)  # cdk.json's overrides are in the defaults


def test_prepare_runs_our_image_with_the_prepare_command(training, outputs):
    defaults = {p["Name"]: p["DefaultValue"] for p in training["Parameters"]}
    assert defaults["PrepareData"] is True and defaults["RawDataUri"].endswith("/raw/")
    args = steps_by_name(training)["Prepare"]["Arguments"]
    assert args["AppSpecification"]["ImageUri"] == outputs["ImageUri"]
    assert args["AppSpecification"]["ContainerArguments"][0] == "prepare"
    assert args["ProcessingInputs"][0]["S3Input"]["LocalPath"] == "/opt/ml/processing/input/raw"
    assert args["ProcessingInputs"][0]["S3Input"]["S3Uri"] == {"Get": "Parameters.RawDataUri"}
    outputs_config = args["ProcessingOutputConfig"]["Outputs"]
    local_paths = {o["OutputName"]: o["S3Output"]["LocalPath"] for o in outputs_config}
    assert local_paths == {c: f"/opt/ml/processing/output/{c}" for c in ("train", "validation", "tokenizer")}
    assert args["NetworkConfig"] == {
        "EnableNetworkIsolation": True,
        "EnableInterContainerTrafficEncryption": True,
    }


def test_registration_names_our_image_json_and_real_time_instances_pending_approval(training, outputs):
    register = steps_by_name(training)["RegisterModelSpotFromRaw"]["Arguments"]
    defaults = {p["Name"]: p["DefaultValue"] for p in training["Parameters"]}
    assert register["ModelPackageGroupName"] == outputs["ModelPackageGroupName"]
    assert register["ModelApprovalStatus"] == {"Get": "Parameters.ModelApprovalStatus"}
    assert defaults["ModelApprovalStatus"] == "PendingManualApproval"
    spec = register["InferenceSpecification"]
    model_data = {"Get": "Steps.TrainSpotFromRaw.ModelArtifacts.S3ModelArtifacts"}
    assert spec["Containers"] == [{"Image": outputs["ImageUri"], "ModelDataUrl": model_data}]
    assert spec["SupportedContentTypes"] == ["application/json"]
    assert "ml.g5.2xlarge" in spec["SupportedRealtimeInferenceInstanceTypes"]


def test_tuning_searches_lr_warmup_and_weight_decay_and_registers_the_best_job(tuning, outputs):
    steps = steps_by_name(tuning)
    args = steps["TuneSpotFromTokenized"]["Arguments"]
    config = args["HyperParameterTuningJobConfig"]
    assert config["Strategy"] == "Bayesian" and config["TrainingJobEarlyStoppingType"] == "Auto"
    assert config["HyperParameterTuningJobObjective"] == {"Type": "Minimize", "MetricName": OBJECTIVE_METRIC}
    assert config["ResourceLimits"] == {
        "MaxNumberOfTrainingJobs": {"Get": "Parameters.TuningMaxJobs"},
        "MaxParallelTrainingJobs": {"Get": "Parameters.TuningMaxParallelJobs"},
    }
    ranges = config["ParameterRanges"]
    scaling = {r["Name"]: r["ScalingType"] for kind in ranges.values() for r in kind}
    assert scaling == {"learning_rate": "Logarithmic", "weight_decay": "Linear", "warmup_steps": "Linear"}
    static = args["TrainingJobDefinition"]["StaticHyperParameters"]
    assert set(static) == set(FIELDS) - set(scaling)  # tuned ones are the tuner's to set
    assert args["TrainingJobDefinition"]["AlgorithmSpecification"]["TrainingImage"] == outputs["ImageUri"]
    # Spot trials checkpoint under one prefix (one CheckpointConfig for all), each in its own jobs/<name>.
    job = args["TrainingJobDefinition"]
    assert job["CheckpointConfig"] == {
        "S3Uri": {
            "Std:Join": {
                "On": "/",
                "Values": [
                    f"s3://{outputs['ArtifactsBucketName']}/checkpoints",
                    {"Get": "Execution.PipelineExecutionId"},
                    "tuning",
                    "",
                ],
            }
        },
        "LocalPath": "/opt/ml/checkpoints",
    }
    assert job["Environment"][PER_JOB_CHECKPOINTS_ENV] == "true"
    assert "KeepAlivePeriodInSeconds" not in job["ResourceConfig"]  # spot trials: no warm pool
    register = steps["RegisterModelSpotFromTokenized"]["Arguments"]["InferenceSpecification"]["Containers"][0]
    url = register["ModelDataUrl"]["Std:Join"]["Values"]
    assert url == [
        f"s3://{outputs['ArtifactsBucketName']}/tuning",
        {"Get": "Steps.TuneSpotFromTokenized.BestTrainingJob.TrainingJobName"},
        "output/model.tar.gz",
    ]
    assert args["TrainingJobDefinition"]["OutputDataConfig"]["S3OutputPath"] == url[0]
    gate = steps["CheckValLossSpotFromTokenized"]["Arguments"]["Conditions"][0]
    best = "Steps.TuneSpotFromTokenized.BestTrainingJob.FinalHyperParameterTuningJobObjectiveMetric.Value"
    assert gate["LeftValue"] == {"Get": best}


def test_no_tuning_trial_asks_for_a_warm_pool_and_on_demand_trials_sync_no_checkpoints(tuning):
    """SageMaker keeps warm pools for training jobs only (never spot); a tuning job drops KeepAlive."""
    steps = steps_by_name(tuning)
    for name in ("TuneOnDemandFromRaw", "TuneOnDemandFromTokenized"):
        job = steps[name]["Arguments"]["TrainingJobDefinition"]
        assert "KeepAlivePeriodInSeconds" not in job["ResourceConfig"]
        assert "CheckpointConfig" not in job and PER_JOB_CHECKPOINTS_ENV not in job["Environment"]
    for name in ("TuneSpotFromRaw", "TuneSpotFromTokenized"):
        job = steps[name]["Arguments"]["TrainingJobDefinition"]
        assert "KeepAlivePeriodInSeconds" not in job["ResourceConfig"] and "CheckpointConfig" in job


def test_deploying_starts_the_training_pipeline_once_per_definition(template, outputs, synthesized_app):
    (resource,) = resources_of_type(template, "Custom::AWS").values()
    values = TemplateValues(template)
    create, update = (json.loads(values.resolve(resource["Properties"][k])) for k in ("Create", "Update"))
    assert create == update  # a changed definition starts a run exactly as the first deploy does
    assert create["parameters"]["PipelineName"] == outputs["TrainingPipelineName"]
    stack = synthesized_app.stacks["TrainingStack"]
    digest = definition_digest(stack, stack.pipelines.training_definition)
    assert create["parameters"]["PipelineExecutionDisplayName"] == f"deploy-{digest}"
    assert "TrainingExecutionArn" in template["Outputs"]
    pipeline_id = next(
        iter(
            k
            for k, v in resources_of_type(template, "AWS::SageMaker::Pipeline").items()
            if v["Properties"]["PipelineName"] == "jax-llm-training"
        )
    )
    assert pipeline_id in resource["DependsOn"]


def test_the_digest_changes_with_the_definition_and_only_with_it():
    """CloudFormation calls onUpdate only when the digest (in the properties) changes."""
    stack = Stack(App(), "Digest")
    definition = {"Steps": [{"Name": "Train", "Arguments": {"HyperParameters": {"learning_rate": "3e-4"}}}]}
    same = json.loads(json.dumps(definition))
    changed = json.loads(json.dumps(definition).replace("3e-4", "1e-4"))
    assert definition_digest(stack, definition) == definition_digest(stack, same)
    assert definition_digest(stack, definition) != definition_digest(stack, changed)


def test_start_training_false_deploys_the_pipelines_but_starts_nothing(synth_app):
    template = synth_app({"startTraining": "false"}).template_json["TrainingStack"]
    assert not resources_of_type(template, "Custom::AWS")
    assert "TrainingExecutionArn" not in template["Outputs"]
    assert len(resources_of_type(template, "AWS::SageMaker::Pipeline")) == 2


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"trainingHyperparameters": {"learning_rat": 0.001}}, "trainingHyperparameters"),
        ({"trainingMaxWaitSeconds": 3600, "trainingMaxRuntimeSeconds": 3600}, "trainingMaxWaitSeconds"),
        ({"tuningWarmupStepsRange": [100, 50000]}, "tuningWarmupStepsRange"),
        ({"inferenceInstanceTypes": ["g5.xlarge"]}, "inferenceInstanceTypes"),
    ],
)
def test_a_wrong_pipeline_setting_stops_synth_naming_the_key(overrides, key):
    with pytest.raises(SettingsError) as error:
        Settings.from_context({**cdk_json_context(), **overrides})
    assert error.value.key == key
