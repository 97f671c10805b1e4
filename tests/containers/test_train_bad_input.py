"""Bad input fails fast: `output/failure` starts with the error naming the key or channel; exit non-zero."""

import signal
import subprocess
import sys

import pytest

from jax_llm import train
from tests.conftest import TINY_HYPERPARAMETERS, train_command_env, write_training_tree


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


@pytest.mark.parametrize(("override", "expected"), [
    ({"learnig_rate": "0.1"}, "HyperparameterError: hyperparameter 'learnig_rate': unknown hyperparameter "
                              "(did you mean 'learning_rate'?)"),
    ({"max_steps": '"ten"'},
     "HyperparameterError: hyperparameter 'max_steps': expected an integer, got '\"ten\"'"),
    ({"batch_size": "0"}, "HyperparameterError: hyperparameter 'batch_size': expected at least 1, got 0"),
    ({"preset": '"7b"'}, "HyperparameterError: hyperparameter 'preset': expected one of"),
])
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
    result = subprocess.run([sys.executable, "-m", "jax_llm", "train"], env=train_command_env(root),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    failure = (root / "output" / "failure").read_text()
    assert failure.startswith("HyperparameterError: hyperparameter 'warmup_steps': expected an integer")
    assert "Traceback (most recent call last)" in failure.split("\n\n", 1)[1]  # traceback after the message
    assert "warmup_steps" in result.stderr
