"""Bad input fails fast: `output/failure` starts with the error naming the key or channel; exit non-zero."""

import signal
import subprocess
import sys
import tempfile

import pytest

from jax_llm.contract.failure import write_failure
from jax_llm.contract.hyperparameters import parse_hyperparameters
from jax_llm.training import train
from tests.support import TINY_HYPERPARAMETERS, train_command_env, write_training_tree


@pytest.fixture
def run_main(monkeypatch):
    """Runs `train.main` here on a tree (as `python -m jax_llm train` would), restoring SIGTERM after."""
    previous = signal.getsignal(signal.SIGTERM)

    def run(root):
        monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(root))
        return train.main([])

    yield run
    signal.signal(signal.SIGTERM, previous)


def _first_line(root) -> str:
    return (root / "output" / "failure").read_text().splitlines()[0]


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            {"learnig_rate": "0.1"},
            "HyperparameterError: hyperparameter 'learnig_rate': unknown hyperparameter "
            "(did you mean 'learning_rate'?)",
        ),
        (
            {"max_steps": '"ten"'},
            "HyperparameterError: hyperparameter 'max_steps': expected an integer, got '\"ten\"'",
        ),
        ({"batch_size": "0"}, "HyperparameterError: hyperparameter 'batch_size': expected at least 1, got 0"),
        ({"preset": '"70b"'}, "HyperparameterError: hyperparameter 'preset': expected one of"),
        ({"mesh": '"4*8"'}, "HyperparameterError: hyperparameter 'mesh': expected 'auto' or DATAxFSDP"),
        # Well-formed but not this cluster's shape: found when the job starts, before any data is read.
        (
            {"mesh": '"2x4"'},
            "HyperparameterError: hyperparameter 'mesh': 2x4 is 8 devices, but the cluster has 1",
        ),
    ],
)
def test_bad_hyperparameter_fails_before_any_work(tmp_path, run_main, override, expected):
    root = write_training_tree(tmp_path / "opt-ml", {**TINY_HYPERPARAMETERS, **override}, corpus=False)
    assert run_main(root) == 1
    assert _first_line(root).startswith(expected)
    assert not (root / "model").exists() and not (root / "checkpoints").exists()


def test_missing_train_channel_names_the_channel_and_path(tmp_path, run_main):
    root = write_training_tree(tmp_path / "opt-ml", TINY_HYPERPARAMETERS, corpus=False)
    assert run_main(root) == 1
    line = _first_line(root)
    assert line.startswith("DataError: channel 'train'") and str(root / "input" / "data" / "train") in line


def test_empty_train_channel_names_the_channel_and_path(tmp_path, run_main):
    root = write_training_tree(tmp_path / "opt-ml", TINY_HYPERPARAMETERS, corpus=False)
    (root / "input" / "data" / "train").mkdir(parents=True)
    assert run_main(root) == 1
    line = _first_line(root)
    assert line.startswith("DataError: channel 'train'") and "empty" in line


def test_the_image_entry_point_exits_non_zero_with_the_failure_file(tmp_path):
    hyperparameters = {**TINY_HYPERPARAMETERS, "warmup_steps": '"soon"'}
    root = write_training_tree(tmp_path / "opt-ml", hyperparameters, corpus=False)
    result = subprocess.run(
        [sys.executable, "-m", "jax_llm", "train"],
        env=train_command_env(root),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    failure = (root / "output" / "failure").read_text()
    assert failure.startswith("HyperparameterError: hyperparameter 'warmup_steps': expected an integer")
    assert "Traceback (most recent call last)" in failure.split("\n\n", 1)[1]  # traceback after the message
    assert "warmup_steps" in result.stderr


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json", "is not valid JSON"),
        ('{"current_host": "algo-1"}', "must hold an object with a non-empty list `hosts`"),
    ],
)
def test_a_malformed_resourceconfig_names_the_file(tmp_path, run_main, content, expected):
    root = write_training_tree(tmp_path / "opt-ml", TINY_HYPERPARAMETERS)
    config = root / "input" / "config" / "resourceconfig.json"
    config.write_text(content)
    assert run_main(root) == 1
    assert _first_line(root).startswith(f"ResourceConfigError: {config} ") and expected in _first_line(root)


def test_a_missing_hyperparameters_file_is_said_loudly_before_anything_runs(tmp_path, run_main, capfd):
    root = write_training_tree(tmp_path / "opt-ml", TINY_HYPERPARAMETERS, corpus=False)
    (root / "input" / "config" / "hyperparameters.json").unlink()
    assert run_main(root) == 1  # then the missing train channel ends it
    said = capfd.readouterr().err
    assert (
        f"WARNING: {root / 'input' / 'config' / 'hyperparameters.json'} does not exist (SageMaker always "
        "writes it); training with EVERY DEFAULT hyperparameter: preset=125m, batch_size=64"
    ) in said


def test_a_failed_run_leaves_no_scratch_directory(tmp_path, run_main, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    root = write_training_tree(tmp_path / "opt-ml", TINY_HYPERPARAMETERS, corpus=False)
    (root / "input" / "data" / "train").mkdir(parents=True)  # empty: fails while loading the data
    assert run_main(root) == 1
    assert list((tmp_path / "tmp").glob("jax-llm-data-*")) == []


def test_out_of_memory_names_the_settings_that_decide_memory_first(tmp_path):
    import jax.numpy as jnp

    try:
        jnp.zeros((1 << 42,), jnp.float32).block_until_ready()  # 16 TiB: the device refuses it
    except Exception as error:  # noqa: BLE001 - XLA's own error type, whatever its module
        out_of_memory = error
    else:
        pytest.fail("a 16 TiB allocation succeeded")
    config = parse_hyperparameters({**TINY_HYPERPARAMETERS, "remat": "true"})
    headline = train.out_of_memory_headline(out_of_memory, config)
    assert headline.startswith(
        "OutOfMemoryError: the device ran out of memory. What decides memory: "
        "preset=tiny, batch_size=8, seq_len=64, grad_accum_steps=1, remat=True, fsdp=False"
    )
    write_failure(tmp_path / "failure", out_of_memory, headline=headline)
    text = (tmp_path / "failure").read_text()
    assert text.startswith(headline) and len(headline) < 1024  # within SageMaker's FailureReason
    assert train.out_of_memory_headline(ValueError("bad"), config) is None
