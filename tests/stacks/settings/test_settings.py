"""Settings from CDK context: defaults parse; a wrong value names the key, the value and what is allowed."""

from __future__ import annotations

import json
import subprocess

import pytest

from jax_llm.contract.hyperparameters import FIELDS
from stacks.settings import RETIRED_KEYS, Context, Settings, SettingsError
from tests.support import REPO

CONTEXT = json.loads((REPO / "cdk.json").read_text())["context"]


def settings_with(**overrides) -> Settings:
    """Settings from cdk.json's context with some keys replaced."""
    return Settings.from_context({**CONTEXT, **overrides})


def test_cdk_json_defaults_parse_into_typed_sections():
    settings = Settings.from_context(CONTEXT)
    assert settings.project.name == CONTEXT["projectName"]
    assert settings.image.untagged_image_days == CONTEXT["ecrUntaggedImageDays"]
    assert settings.image.cpu_only is False
    assert settings.storage.data_bucket_name == ""
    assert settings.registry.model_package_group_name == CONTEXT["modelPackageGroupName"]


def test_every_setting_read_from_context_is_defaulted_in_cdk_json():
    read: list[str] = []
    Settings.from_context(Context(lambda key: read.append(key) or CONTEXT.get(key)))
    assert read and [key for key in read if key not in CONTEXT and key not in RETIRED_KEYS] == []
    # ...and every setting in cdk.json is read (feature flags, "@...", belong to the CDK itself).
    assert [key for key in CONTEXT if not key.startswith("@") and key not in read] == []


def test_command_line_strings_are_converted():
    # `cdk synth -c key=value` passes every value as a string.
    settings = settings_with(ecrUntaggedImageDays="7", imageCpuOnly="true", logRetentionDays="30")
    assert settings.image.untagged_image_days == 7
    assert settings.image.cpu_only is True
    assert settings.storage.log_retention_days == 30


def test_settings_are_immutable():
    settings = Settings.from_context(CONTEXT)
    with pytest.raises(AttributeError):
        settings.project.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("projectName", "Jax_LLM", "lower-case letters"),
        ("removalPolicy", "delete", "one of retain, destroy"),
        ("imageCpuOnly", "yes", "true or false"),
        ("ecrUntaggedImageDays", 0, "an integer >= 1"),
        ("ecrUntaggedImageDays", "many", "an integer >= 1"),
        ("dataBucketName", "Team_Data", "an S3 bucket name"),
        ("logRetentionDays", 42, "one of 1, 3, 5"),
        ("kmsPendingWindowDays", 3, ">= 7 and <= 30"),
        ("modelPackageGroupName", "-gpt", "not starting or ending with '-'"),
        ("trainingInstanceType", "p4de.24xlarge", "ml.<family>.<size>"),
        ("trainingInstanceCount", 0, "an integer >= 1"),
    ],
)
def test_wrong_value_names_key_value_and_what_is_allowed(key, value, allowed):
    with pytest.raises(SettingsError) as raised:
        settings_with(**{key: value})
    message = str(raised.value)
    assert f"'{key}'" in message and repr(value) in message and allowed in message
    assert (raised.value.key, raised.value.value) == (key, value)


def test_spot_max_wait_must_exceed_max_runtime():
    with pytest.raises(SettingsError) as raised:
        settings_with(trainingUseSpot=True, trainingMaxRuntimeSeconds=3600, trainingMaxWaitSeconds=3600)
    assert raised.value.key == "trainingMaxWaitSeconds"
    assert "more than trainingMaxRuntimeSeconds" in str(raised.value)


def test_missing_key_is_an_error_not_a_silent_default():
    context = dict(CONTEXT)
    del context["ecrUntaggedImageDays"]
    with pytest.raises(SettingsError, match="'ecrUntaggedImageDays'.*defaulted in cdk.json"):
        Settings.from_context(context)


def test_cdk_synth_stops_with_the_message(cdk_cli):
    result: subprocess.CompletedProcess = cdk_cli(["synth", "--quiet", "-c", "ecrUntaggedImageDays=0"])
    assert result.returncode != 0
    assert "context key 'ecrUntaggedImageDays' has value '0'; allowed: an integer >= 1" in result.stderr


@pytest.mark.parametrize(
    ("key", "name"),
    [("tuningLearningRateRange", "learning_rate"), ("tuningWeightDecayRange", "weight_decay")],
)
def test_tuning_ranges_are_bounded_by_the_trainers_own_table(key, name):
    # The bound is the trainer's (jax_llm.contract.hyperparameters), not a copy kept in the stacks.
    maximum = FIELDS[name].metadata["maximum"]
    settings_with(**{key: [maximum / 2, maximum]})
    with pytest.raises(SettingsError) as error:
        settings_with(**{key: [maximum / 2, maximum * 1.5]})
    assert error.value.key == key and f"<= {maximum}" in str(error.value)


def test_a_log_scale_learning_rate_range_cannot_start_at_zero():
    with pytest.raises(SettingsError) as error:
        settings_with(tuningLearningRateRange=[0, 0.001])
    assert error.value.key == "tuningLearningRateRange" and "log scale" in str(error.value)


@pytest.mark.parametrize("key", sorted(RETIRED_KEYS))
def test_a_retired_key_stops_synth_naming_what_replaced_it(key):
    assert key not in CONTEXT
    with pytest.raises(SettingsError) as error:
        settings_with(**{key: "30"})
    assert error.value.key == key and RETIRED_KEYS[key] in str(error.value)
