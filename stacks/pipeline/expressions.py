"""The pipeline definition's expression language: parameter, property and execution references, joins.

SageMaker Pipelines resolves these when a step runs: ``{"Get": "Parameters.X"}`` reads a parameter,
``{"Get": "Steps.Train.ModelArtifacts.S3ModelArtifacts"}`` a property of an earlier step's Describe*
response, ``{"Get": "Execution.PipelineExecutionId"}`` an execution variable, and
``{"Std:Join": {"On": "/", "Values": [...]}}`` concatenates strings.
"""

from __future__ import annotations

from typing import Any

Expression = dict[str, Any]


def parameter(name: str) -> Expression:
    """A reference to the pipeline parameter ``name``."""
    return {"Get": f"Parameters.{name}"}


def step_property(step_name: str, path: str) -> Expression:
    """A property of step ``step_name`` (its Describe* response), e.g. ``ModelArtifacts.S3ModelArtifacts``."""
    return {"Get": f"Steps.{step_name}.{path}"}


def execution_id() -> Expression:
    """The id of the running pipeline execution (unique per run; namespaces its S3 prefixes)."""
    return {"Get": "Execution.PipelineExecutionId"}


def join(values: list[Any], on: str = "") -> Expression:
    """The string concatenation of ``values`` (strings and expressions) separated by ``on``."""
    return {"Std:Join": {"On": on, "Values": values}}


def condition(kind: str, left: Any, right: Any) -> Expression:
    """One condition of a Condition step: ``kind`` is Equals, GreaterThan, LessThanOrEqualTo, ..."""
    return {"Type": kind, "LeftValue": left, "RightValue": right}
