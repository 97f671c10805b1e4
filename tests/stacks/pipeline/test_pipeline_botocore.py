"""Every job step's Arguments are a valid request of the SageMaker API the step stands for.

The synthesized definitions are resolved as CloudFormation would resolve them; pipeline references are
then replaced the way SageMaker replaces them at run time: a parameter by its default value (so a
parameter of the wrong type for its field fails here), a step property or execution variable by a
value of the field's type, a join by a string. botocore's own service model then validates the
request, offline, exactly as boto3 would before sending it.
"""

from __future__ import annotations

import re
from typing import Any

import botocore.session
import pytest
from botocore.validate import ParamValidator

from tests.stacks.cfn_values import walk_steps

# Step type -> (API operation, the job-name member the pipeline fills in itself).
OPERATIONS = {
    "Processing": ("CreateProcessingJob", {"ProcessingJobName": "pipelines-abc123-Prepare-x1y2z3"}),
    "Training": ("CreateTrainingJob", {"TrainingJobName": "pipelines-abc123-TrainSpotFromRaw-x1y2z3"}),
    "Tuning": ("CreateHyperParameterTuningJob", {"HyperParameterTuningJobName": "abc123-TuneSpot-x1y2z3"}),
    "RegisterModel": ("CreateModelPackage", {}),
}
SAMPLE_BY_TYPE = {
    "string": "pipeline-value",
    "integer": 3,
    "long": 3,
    "float": 1.5,
    "double": 1.5,
    "boolean": True,
}


@pytest.fixture(scope="module")
def service_model():
    """botocore's SageMaker service model (shipped with botocore, no network)."""
    return botocore.session.get_session().get_service_model("sagemaker")


def _python_pattern(pattern: str | None) -> re.Pattern | None:
    """The model's pattern compiled by Python's re; None for the few in Java-only syntax (\\p{...})."""
    try:
        return re.compile(pattern) if pattern else None
    except re.error:
        return None


class Substitution:
    """Replaces pipeline expressions inside a request, guided by the request's botocore shapes."""

    def __init__(self, definition: dict) -> None:
        self.defaults = {p["Name"]: p["DefaultValue"] for p in definition["Parameters"]}
        self.problems: list[str] = []  # what ParamValidator leaves out: enums, patterns, maximum lengths

    def check_string(self, value: Any, shape, where: str) -> None:
        if not isinstance(value, str) or shape.type_name != "string":
            return
        if shape.enum and value not in shape.enum:
            self.problems.append(f"{where}: {value!r} is not one of {shape.enum}")
        pattern = _python_pattern(shape.metadata.get("pattern"))
        if pattern and not pattern.search(value):
            self.problems.append(f"{where}: {value!r} does not match {pattern.pattern}")
        if len(value) > shape.metadata.get("max", len(value)):
            self.problems.append(f"{where}: {value!r} is longer than {shape.metadata['max']}")

    def value(self, expression: dict, shape) -> Any:
        if "Std:Join" in expression:
            join = expression["Std:Join"]
            return join["On"].join(
                str(self.value(v, shape) if isinstance(v, dict) else v) for v in join["Values"]
            )
        reference = expression["Get"]
        if reference.startswith("Parameters."):
            value = self.defaults[reference.removeprefix("Parameters.")]  # KeyError: undeclared parameter
            self.check_string(value, shape, reference)
            return value
        return SAMPLE_BY_TYPE[shape.type_name]

    def apply(self, value: Any, shape, where: str = "") -> Any:
        if isinstance(value, dict) and ("Get" in value or "Std:Join" in value):
            return self.value(value, shape)
        self.check_string(value, shape, where)
        if shape.type_name == "structure" and isinstance(value, dict):
            return {
                k: self.apply(v, shape.members[k], f"{where}.{k}") if k in shape.members else v
                for k, v in value.items()
            }
        if shape.type_name == "list" and isinstance(value, list):
            return [self.apply(v, shape.member, f"{where}[{i}]") for i, v in enumerate(value)]
        if shape.type_name == "map" and isinstance(value, dict):
            return {k: self.apply(v, shape.value, f"{where}.{k}") for k, v in value.items()}
        return value


def job_steps(definition: dict) -> list[dict]:
    return [s for s in walk_steps(definition["Steps"]) if s["Type"] in OPERATIONS]


def test_both_pipelines_have_every_job_step_type(definitions):
    kinds = {name: {s["Type"] for s in job_steps(d)} for name, d in definitions.items()}
    assert kinds == {
        "jax-llm-training": {"Processing", "Training", "RegisterModel"},
        "jax-llm-tuning": {"Processing", "Tuning", "RegisterModel"},
    }


def test_every_job_step_is_a_valid_request(definitions, service_model):
    checked = 0
    for pipeline_name, definition in definitions.items():
        substitution = Substitution(definition)
        for step in job_steps(definition):
            operation, name = OPERATIONS[step["Type"]]
            shape = service_model.operation_model(operation).input_shape
            request = {**name, **substitution.apply(step["Arguments"], shape)}
            report = ParamValidator().validate(request, shape)
            where = f"{pipeline_name}/{step['Name']} ({operation})"
            assert not report.has_errors(), f"{where}:\n{report.generate_report()}"
            assert not substitution.problems, f"{where}: {substitution.problems}"
            checked += 1
    # Per pipeline: Prepare, then a job, its Track step and a registration in each of the 4 variants.
    assert checked == 26


def test_a_wrong_parameter_type_is_caught(definitions, service_model):
    """The substitution is strict: an Integer field fed a String parameter fails validation."""
    definition = definitions["jax-llm-training"]
    step = next(s for s in job_steps(definition) if s["Type"] == "Training")
    substitution = Substitution(definition)
    substitution.defaults["TrainingInstanceCount"] = "4"
    shape = service_model.operation_model("CreateTrainingJob").input_shape
    request = {**OPERATIONS["Training"][1], **substitution.apply(step["Arguments"], shape)}
    report = ParamValidator().validate(request, shape)
    assert report.has_errors() and "InstanceCount" in report.generate_report()
