"""The metric log format and SageMaker's MetricDefinitions, checked against lines and a real training log."""

import json
import math
import re

from jax_llm.contract.metrics import (
    METRIC_DEFINITIONS,
    METRIC_NAMES,
    OBJECTIVE_METRIC,
    format_eval_line,
    format_train_line,
    parse_metrics,
)


def test_definitions_have_sagemakers_shape_and_one_capture_group():
    assert [d["Name"] for d in METRIC_DEFINITIONS] == list(METRIC_NAMES)
    assert OBJECTIVE_METRIC in METRIC_NAMES and len(METRIC_DEFINITIONS) <= 40
    for definition in METRIC_DEFINITIONS:
        assert set(definition) == {"Name", "Regex"}
        assert re.compile(definition["Regex"]).groups == 1


def test_formatted_lines_parse_back_to_their_values():
    line = format_train_line(
        120,
        5000,
        train_loss=3.45678,
        learning_rate=5.9e-4,
        tokens_per_sec=51234.04,
        mfu=0.43121,
        elapsed_s=121,
        eta_s=4930,
    )
    assert line.startswith("step 120/5000 (2.4%) ") and "elapsed=0:02:01" in line and "eta=1:22:10" in line
    parsed = parse_metrics(line + "\n" + format_eval_line(500, 5000, val_loss=3.21))
    assert parsed == {
        "train_loss": [3.4568],
        "val_loss": [3.21],
        "learning_rate": [5.9e-4],
        "tokens_per_sec": [51234.0],
        "mfu": [0.4312],
    }


def test_unknown_mfu_records_nothing_rather_than_a_wrong_value():
    line = format_train_line(
        1,
        10,
        train_loss=1.0,
        learning_rate=1e-3,
        tokens_per_sec=10.0,
        mfu=None,
        elapsed_s=1.0,
        eta_s=math.inf,
    )
    assert "mfu=n/a" in line and "eta=n/a" in line
    assert parse_metrics(line)["mfu"] == []


def test_val_loss_regex_does_not_match_inside_other_names():
    assert parse_metrics("eval_loss=1.0 interval_loss=2.0")["val_loss"] == []


def test_definitions_read_the_real_training_log(tiny_training_run):
    """What SageMaker would chart for the tiny run: every logged step and both evaluations."""
    parsed = parse_metrics(tiny_training_run.log)
    final = json.loads((tiny_training_run.model_dir / "metrics.json").read_text())
    assert len(parsed["train_loss"]) == 6  # 24 steps, log_every 4
    assert len(parsed["val_loss"]) == 2  # eval_every 12 and the end
    assert len(parsed["learning_rate"]) == len(parsed["tokens_per_sec"]) == 6
    assert parsed["val_loss"][-1] == round(final["val_loss"], 4)
    assert all(v > 0 for v in parsed["tokens_per_sec"])
