"""Hyperparameters as SageMaker delivers them: JSON-encoded or raw strings, ignored keys, named errors."""

import json

import pytest

from jax_llm.contract.hyperparameters import (
    HyperparameterError,
    TrainConfig,
    describe,
    parse_hyperparameters,
    read_hyperparameters,
)
from tests.support import REPO


def test_sdk_quoted_and_raw_values_parse_to_the_same_config():
    sdk = {
        "preset": '"350m"',
        "max_steps": "100",
        "learning_rate": "0.0003",
        "fsdp": "true",
        "compute_dtype": '"bfloat16"',
    }
    raw = {
        "preset": "350m",
        "max_steps": "100",
        "learning_rate": "3e-4",
        "fsdp": "True",
        "compute_dtype": "bfloat16",
    }
    assert parse_hyperparameters(sdk) == parse_hyperparameters(raw)
    config = parse_hyperparameters(sdk)
    assert (config.preset, config.max_steps, config.learning_rate, config.fsdp) == ("350m", 100, 3e-4, True)


def test_string_that_looks_like_a_number_stays_a_string():
    assert parse_hyperparameters({"preset": "1.3b"}).preset == "1.3b"


def test_sagemaker_and_tuner_keys_are_ignored():
    config = parse_hyperparameters(
        {
            "sagemaker_program": '"train.py"',
            "sagemaker_submit_directory": '"s3://b/k"',
            "sagemaker_region": '"us-east-1"',
            "sagemaker_container_log_level": "20",
            "sagemaker_job_name": '"j"',
            "sagemaker_enable_cloudwatch_metrics": "false",
            "_tuning_objective_metric": '"val_loss"',
            "max_steps": "7",
        }
    )
    assert config == TrainConfig(max_steps=7)


def test_integral_float_is_accepted_for_an_integer():
    assert parse_hyperparameters({"warmup_steps": "100.0"}).warmup_steps == 100


@pytest.mark.parametrize(
    ("raw", "key", "expected"),
    [
        ({"learnig_rate": "0.1"}, "learnig_rate", "did you mean 'learning_rate'"),
        ({"max_steps": "ten"}, "max_steps", "expected an integer, got 'ten'"),
        ({"max_steps": "2.5"}, "max_steps", "expected an integer"),
        ({"learning_rate": '"fast"'}, "learning_rate", "expected a number"),
        ({"fsdp": "1"}, "fsdp", "expected a boolean"),
        ({"batch_size": "0"}, "batch_size", "expected at least 1, got 0"),
        ({"learning_rate": "2"}, "learning_rate", "expected at most 1.0"),
        ({"seq_len": "4"}, "seq_len", "expected at least 8"),
        (
            {"preset": "huge"},
            "preset",
            "expected one of ['tiny', '125m', '350m', '1.3b', 'tiny-llama', '3b', '7b', '7b-gqa', '13b'], got 'huge'",
        ),
        ({"compute_dtype": "fp16"}, "compute_dtype", "expected one of ['auto', 'float32', 'bfloat16']"),
        (
            {"batch_size": "8", "grad_accum_steps": "3"},
            "grad_accum_steps",
            "must be a multiple of grad_accum_steps=3",
        ),
        ({"max_steps": "10", "warmup_steps": "11"}, "warmup_steps", "expected at most max_steps"),
    ],
)
def test_bad_value_names_the_key_and_what_was_expected(raw, key, expected):
    with pytest.raises(HyperparameterError) as error:
        parse_hyperparameters(raw)
    assert error.value.key == key
    assert str(error.value).startswith(f"hyperparameter {key!r}: ")
    assert expected in str(error.value)


def test_default_warmup_is_clamped_for_short_runs_not_an_error():
    assert parse_hyperparameters({"max_steps": "3"}).max_steps == 3


def test_reads_the_file_and_missing_file_means_defaults(tmp_path):
    path = tmp_path / "hyperparameters.json"
    assert read_hyperparameters(path) == TrainConfig()
    path.write_text(json.dumps({"seed": "5"}))
    assert read_hyperparameters(path).seed == 5
    path.write_text("{not json")
    with pytest.raises(HyperparameterError, match="not valid JSON"):
        read_hyperparameters(path)


def test_every_field_is_described_for_the_readme():
    rows = describe()
    assert [r[0] for r in rows] == [f for f in TrainConfig.__dataclass_fields__]
    assert all(meaning for *_, meaning in rows)


def test_readme_table_lists_every_hyperparameter_with_its_default():
    readme = (REPO / "docs" / "training.md").read_text()
    for name, kind, default, _ in describe():
        row = f"| `{name}` | {kind} | `{default}` |"
        assert row in readme, f"docs/training.md's hyperparameter table lacks {name}"


def test_preset_choices_match_the_model_presets():
    from jax_llm.contract.hyperparameters import PRESETS
    from jax_llm.model.config import PRESETS as MODEL_PRESETS

    assert set(PRESETS) == set(MODEL_PRESETS)
