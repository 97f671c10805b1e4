"""`python -m jax_llm compile-cache` as a processing job runs it: bad arguments and settings end in
output/message (the job's ExitMessage) with exit code 2, before JAX is loaded. The job's success path is
tests/local_mode/test_compile_cache.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO


def compile_cache(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "jax_llm", "compile-cache", *args],
        env={
            **os.environ,
            "SAGEMAKER_BASE_DIR": str(root),
            "PYTHONPATH": str(REPO / "containers" / "jax-llm"),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "args, env, words",
    [
        ((), {}, "the model directory"),  # no processing/input/model
        (("--modle", "x"), {}, "unrecognized arguments: --modle"),
        (("--model", "."), {"JAX_LLM_MAX_BATCH": "0"}, "JAX_LLM_MAX_BATCH=0 must be at least 1"),
    ],
)
def test_bad_input_is_the_job_s_message_and_exit_2(tmp_path: Path, args, env, words) -> None:
    run = compile_cache(tmp_path, *args, **env)
    assert run.returncode == 2, run.stderr
    assert words in (tmp_path / "output" / "message").read_text()
