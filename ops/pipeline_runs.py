"""Starts a training or tuning pipeline run with other parameters, checked before any GPU is paid for."""

from __future__ import annotations

import difflib
import json

from jax_llm.contract.hyperparameters import FIELDS, HyperparameterError, parse_hyperparameters
from ops.aws import Aws
from ops.errors import OpsError, not_found_as


def parse_assignments(pairs: list[str]) -> dict[str, str]:
    """NAME=VALUE strings from the command line into a dict; a pair without '=' is an error naming it."""
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise OpsError(f"-p expects NAME=VALUE, got {pair!r}.")
        out[name] = value
    return out


def pipeline_parameters(aws: Aws, pipeline_name: str) -> dict[str, dict]:
    """Name -> {"Name", "Type", "DefaultValue"} of the deployed pipeline's definition."""
    sagemaker = aws.client("sagemaker")
    with not_found_as(f"Pipeline {pipeline_name!r} does not exist: deploy TrainingStack first."):
        described = sagemaker.describe_pipeline(PipelineName=pipeline_name)
    definition = json.loads(described["PipelineDefinition"])
    return {p["Name"]: p for p in definition.get("Parameters", [])}


def _check_type(parameter: dict, value: str) -> None:
    """Refuses a value the pipeline would refuse later (Integer, Float, Boolean parameters)."""
    kind, name = parameter.get("Type", "String"), parameter["Name"]
    try:
        if kind == "Integer":
            int(value)
        elif kind == "Float":
            float(value)
    except ValueError:
        raise OpsError(f"pipeline parameter {name} is {kind}, got {value!r}.") from None
    if kind == "Boolean" and value.lower() not in ("true", "false"):
        raise OpsError(f"pipeline parameter {name} is Boolean (true or false), got {value!r}.")


def check_overrides(parameters: dict[str, dict], overrides: dict[str, str]) -> None:
    """Unknown names, wrong types and invalid hyperparameters (the trainer's own parser) fail here, named."""
    for name, value in overrides.items():
        if name not in parameters:
            close = difflib.get_close_matches(name, parameters, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise OpsError(
                f"The pipeline has no parameter {name!r}.{hint} It has: {', '.join(sorted(parameters))}."
            )
        _check_type(parameters[name], value)
    # Hyperparameters are String parameters named like the hyperparameter; the trainer would reject a bad
    # one only after the instances started, so run its parser on the run's full map now.
    merged = {n: str(p["DefaultValue"]) for n, p in parameters.items() if n in FIELDS}
    merged.update({n: v for n, v in overrides.items() if n in FIELDS})
    try:
        parse_hyperparameters(merged)
    except HyperparameterError as exc:
        raise OpsError(f"Invalid hyperparameter: {exc}") from exc


def start_run(
    aws: Aws, pipeline_name: str, overrides: dict[str, str], display_name: str | None = None
) -> str:
    """Checks `overrides` against the pipeline, starts an execution with them and returns its ARN."""
    check_overrides(pipeline_parameters(aws, pipeline_name), overrides)
    request: dict = {
        "PipelineName": pipeline_name,
        "PipelineParameters": [{"Name": n, "Value": v} for n, v in overrides.items()],
    }
    if display_name:
        request["PipelineExecutionDisplayName"] = display_name
    return aws.client("sagemaker").start_pipeline_execution(**request)["PipelineExecutionArn"]
