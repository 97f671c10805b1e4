"""modelDataCompression=none: training jobs write the model uncompressed, versions register its S3 prefix
(ModelDataSource, no compression), and every job step stays a valid request; gzip keeps model.tar.gz.

The definitions are built the way TrainingStack builds them, from cdk.json's settings with the overrides,
without a synth."""

from __future__ import annotations

import botocore.session
import pytest
from botocore.validate import ParamValidator

from stacks.pipeline.definition import training_definition, tuning_definition
from stacks.pipeline.resources import PipelineResources
from stacks.settings import Settings, SettingsError
from tests.stacks.pipeline.test_pipeline_botocore import OPERATIONS, Substitution, job_steps
from tests.stacks.support import cdk_json_context

UNCOMPRESSED = {"modelDataCompression": "none", "trackingServer": "none", "trackingServerArn": ""}
RESOURCES = PipelineResources(
    image_uri="123456789012.dkr.ecr.us-east-1.amazonaws.com/jax-llm:abc",
    execution_role_arn="arn:aws:iam::123456789012:role/exec",
    artifacts_bucket_name="artifacts",
    data_bucket_name="data",
    kms_key_arn="arn:aws:kms:us-east-1:123456789012:key/k",
    model_package_group_name="jax-llm-gpt",
)


def _definitions(**overrides) -> dict[str, dict]:
    settings = Settings.from_context({**cdk_json_context(), **overrides})
    return {
        "training": training_definition(RESOURCES, settings.pipeline),
        "tuning": tuning_definition(RESOURCES, settings.pipeline, settings.tuning),
    }


@pytest.fixture(scope="module")
def uncompressed() -> dict[str, dict]:
    return _definitions(**UNCOMPRESSED)


def _of_type(definition: dict, kind: str) -> list[dict]:
    return [s for s in job_steps(definition) if s["Type"] == kind]


def test_training_jobs_write_the_model_uncompressed(uncompressed):
    train = _of_type(uncompressed["training"], "Training")
    tune = _of_type(uncompressed["tuning"], "Tuning")
    assert train and tune
    outputs = [s["Arguments"]["OutputDataConfig"] for s in train]
    outputs += [s["Arguments"]["TrainingJobDefinition"]["OutputDataConfig"] for s in tune]
    assert all(o["CompressionType"] == "NONE" for o in outputs)


def test_a_version_registers_the_model_s_prefix_without_compression(uncompressed):
    register = _of_type(uncompressed["training"], "RegisterModel")[0]
    (container,) = register["Arguments"]["InferenceSpecification"]["Containers"]
    assert "ModelDataUrl" not in container
    assert container["ModelDataSource"] == {
        "S3DataSource": {
            "S3Uri": {
                "Get": f"Steps.{_of_type(uncompressed['training'], 'Training')[0]['Name']}"
                ".ModelArtifacts.S3ModelArtifacts"
            },
            "S3DataType": "S3Prefix",
            "CompressionType": "None",
        }
    }
    # The tuner's best job: its output prefix, <S3OutputPath>/<job>/output/model/.
    (best,) = _of_type(uncompressed["tuning"], "RegisterModel")[0]["Arguments"]["InferenceSpecification"][
        "Containers"
    ]
    assert best["ModelDataSource"]["S3DataSource"]["S3Uri"]["Std:Join"]["Values"][-1] == "output/model/"


def test_every_job_step_is_a_valid_request(uncompressed):
    model = botocore.session.get_session().get_service_model("sagemaker")
    for name, definition in uncompressed.items():
        substitution = Substitution(definition)
        for step in job_steps(definition):
            operation, job_name = OPERATIONS[step["Type"]]
            shape = model.operation_model(operation).input_shape
            request = {**job_name, **substitution.apply(step["Arguments"], shape)}
            report = ParamValidator().validate(request, shape)
            assert not report.has_errors(), f"{name}/{step['Name']}: {report.generate_report()}"
            assert not substitution.problems, f"{name}/{step['Name']}: {substitution.problems}"


def test_gzip_keeps_model_tar_gz():
    definitions = _definitions(modelDataCompression="gzip")
    assert all(
        "CompressionType" not in s["Arguments"]["OutputDataConfig"]
        for s in _of_type(definitions["training"], "Training")
    )
    register = _of_type(definitions["tuning"], "RegisterModel")[0]
    (container,) = register["Arguments"]["InferenceSpecification"]["Containers"]
    assert container["ModelDataUrl"]["Std:Join"]["Values"][-1] == "output/model.tar.gz"


def test_a_compression_that_cannot_be_used_names_the_key():
    with pytest.raises(SettingsError, match="context key 'modelDataCompression'") as error:
        Settings.from_context({**cdk_json_context(), "modelDataCompression": "zstd"})
    assert "one of gzip, none" in str(error.value)


def test_uncompressed_models_go_with_mlflow_tracking():
    """The Track step reads an uncompressed job's model/ and data/ prefixes (jax_llm.training.track_job)."""
    settings = Settings.from_context({**cdk_json_context(), "modelDataCompression": "none"})
    assert settings.pipeline.uncompressed_model and settings.tracking.mode == "create"
