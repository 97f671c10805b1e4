"""Tuning trials on spot share one checkpoint S3 prefix, which SageMaker restores whole into each trial's
/opt/ml/checkpoints; with JAX_LLM_CHECKPOINTS_PER_JOB each trial reads and writes only jobs/<its job name>.

The tree below plays that restore: another trial's checkpoints (the session's tiny run, steps 12 and 24)
lie under jobs/trial-a when trial-b starts, with other hyperparameters.
"""

import json
import shutil
from pathlib import Path

import pytest

from jax_llm.contract.paths import JOB_NAME_ENV, PER_JOB_CHECKPOINTS_ENV, SageMakerPaths
from tests.support import TINY_HYPERPARAMETERS, run_training, write_training_tree


def test_paths_put_a_trials_checkpoints_under_its_job_name():
    env = {"SAGEMAKER_BASE_DIR": "/ml", PER_JOB_CHECKPOINTS_ENV: "true", JOB_NAME_ENV: "tune-7k2m-003-9f1c"}
    assert SageMakerPaths.from_env(env).checkpoints == Path("/ml/checkpoints/jobs/tune-7k2m-003-9f1c")
    assert SageMakerPaths.from_env({"SAGEMAKER_BASE_DIR": "/ml", JOB_NAME_ENV: "j"}).checkpoints == Path(
        "/ml/checkpoints"
    )  # training jobs keep the synced directory itself
    for bad in ("", "../other", ".hidden"):
        with pytest.raises(ValueError, match=f"{PER_JOB_CHECKPOINTS_ENV} is set.*{JOB_NAME_ENV} is"):
            SageMakerPaths.from_env({PER_JOB_CHECKPOINTS_ENV: "1", JOB_NAME_ENV: bad})


def _steps(directory: Path) -> list[int]:
    return sorted(int(p.name) for p in (directory / "steps").glob("*") if p.name.isdigit())


def test_a_trial_never_restores_another_trials_weights_and_resumes_its_own(tmp_path, tiny_training_run):
    other_trial = {**TINY_HYPERPARAMETERS, "learning_rate": "0.001"}  # the tuner chose another value
    root = write_training_tree(tmp_path / "opt-ml", other_trial)
    jobs = root / "checkpoints" / "jobs"
    shutil.copytree(tiny_training_run.root / "checkpoints" / "steps", jobs / "trial-a" / "steps")

    code, log = run_training(root, **{PER_JOB_CHECKPOINTS_ENV: "true", JOB_NAME_ENV: "trial-b"})
    assert code == 0, log[-3000:]
    assert "restored checkpoint" not in log  # trial-a's weights were there, and were not read
    assert _steps(jobs / "trial-b") == [12, 24] and _steps(jobs / "trial-a") == [12, 24]
    assert sorted(p.name for p in (root / "checkpoints").iterdir()) == ["jobs"]

    # trial-a restarted after a spot interruption (same job name): it resumes from its own step 24.
    restarted = write_training_tree(tmp_path / "restarted", TINY_HYPERPARAMETERS)
    shutil.copytree(jobs, restarted / "checkpoints" / "jobs")
    code, log = run_training(restarted, **{PER_JOB_CHECKPOINTS_ENV: "true", JOB_NAME_ENV: "trial-a"})
    assert code == 0, log[-3000:]
    assert f"restored checkpoint 24 from {restarted / 'checkpoints' / 'jobs' / 'trial-a'}" in log
    metrics = json.loads((restarted / "model" / "metrics.json").read_text())
    assert metrics["steps"] == 24
