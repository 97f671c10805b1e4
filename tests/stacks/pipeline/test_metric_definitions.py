"""The MetricDefinitions in the synthesized pipelines read the metrics out of a real training log.

SageMaker applies each regex to the job's stdout/stderr and keeps every match's first group; the last
one is what FinalMetricDataList holds, which the registration gate compares with MaxValLoss.
"""

from __future__ import annotations

import json
import math
import re

import pytest

from jax_llm.contract.metrics import OBJECTIVE_METRIC
from tests.stacks.cfn_values import walk_steps


@pytest.fixture(scope="module")
def metric_definitions(definitions) -> list[dict]:
    """The MetricDefinitions of the training steps and the tuner's training jobs (all of them equal)."""
    found = []
    for definition in definitions.values():
        for step in walk_steps(definition["Steps"]):
            if step["Type"] == "Training":
                found.append(step["Arguments"]["AlgorithmSpecification"]["MetricDefinitions"])
            if step["Type"] == "Tuning":
                job = step["Arguments"]["TrainingJobDefinition"]
                found.append(job["AlgorithmSpecification"]["MetricDefinitions"])
    assert len(found) == 8 and all(f == found[0] for f in found)
    return found[0]


def extract(metric_definitions: list[dict], log: str) -> dict[str, list[float]]:
    """What SageMaker records: every match's first capture group, per metric, in log order."""
    return {d["Name"]: [float(m.group(1)) for m in re.finditer(d["Regex"], log)] for d in metric_definitions}


def test_train_and_val_loss_are_read_from_every_line_that_reports_them(metric_definitions, tiny_training_run):
    log = tiny_training_run.log
    metrics = extract(metric_definitions, log)
    train_lines = [line for line in log.splitlines() if "train_loss=" in line]
    eval_lines = [line for line in log.splitlines() if "val_loss=" in line]
    assert len(train_lines) >= 2 and len(eval_lines) >= 2
    assert len(metrics["train_loss"]) == len(train_lines)  # one value per line: no line matched twice
    assert len(metrics["val_loss"]) == len(eval_lines)  # and train_loss never read as val_loss
    assert all(math.isfinite(v) and v > 0 for v in metrics["train_loss"] + metrics["val_loss"])
    assert metrics["train_loss"][-1] < metrics["train_loss"][0]  # the tiny model learns: loss goes down


def test_the_final_val_loss_the_gate_reads_is_the_runs_final_val_loss(metric_definitions, tiny_training_run):
    final = extract(metric_definitions, tiny_training_run.log)[OBJECTIVE_METRIC][-1]
    exported = json.loads((tiny_training_run.model_dir / "metrics.json").read_text())[OBJECTIVE_METRIC]
    assert final == pytest.approx(exported, abs=5e-5)  # the log prints 4 decimals


def test_the_tuning_objective_is_one_of_the_metrics(metric_definitions, definitions):
    tunings = [s for d in definitions.values() for s in walk_steps(d["Steps"]) if s["Type"] == "Tuning"]
    objectives = {
        s["Arguments"]["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]["MetricName"]
        for s in tunings
    }
    assert objectives == {OBJECTIVE_METRIC}
    assert OBJECTIVE_METRIC in {d["Name"] for d in metric_definitions}
