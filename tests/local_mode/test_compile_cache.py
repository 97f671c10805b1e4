"""`python -m local_mode compile-cache`: a processing job compiles a model directory's serving programs into
its compile_cache/, and a fresh server with an empty cache of its own then reads every program, compiling
none."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from jax_llm.contract.serving import COMPILE_CACHE_DIR, STARTUP_EVENT
from local_mode.endpoint import LocalEndpoint

from .test_runner import local_mode

pytestmark = pytest.mark.slow

# A short context and one slot: 4 programs (2 prompt buckets x prefill and decode), so the job takes seconds.
SMALL = {"JAX_LLM_MAX_CONTEXT": "32", "JAX_LLM_MAX_BATCH": "1"}


def test_a_model_compiled_by_the_job_starts_without_compiling(tmp_path: Path, tiny_training_run, monkeypatch):
    model = tmp_path / "model"
    shutil.copytree(tiny_training_run.model_dir, model)
    for key, value in SMALL.items():
        monkeypatch.setenv(key, value)  # the job and the endpoint serve alike, or the keys would differ
    monkeypatch.setenv("JAX_LLM_COMPILE_CACHE_DIR", str(tmp_path / "job-cache"))  # ignored: --output wins

    work = str(tmp_path / "work")
    run = local_mode("compile-cache", "--workdir", work, "--model", str(model), cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert len(list((model / COMPILE_CACHE_DIR).iterdir())) >= 4

    lines: list[str] = []
    environment = {**SMALL, "JAX_LLM_COMPILE_CACHE_DIR": str(tmp_path / "fresh-instance-cache")}
    with LocalEndpoint(model, tmp_path / "endpoint", environment=environment, log=lines.append) as endpoint:
        endpoint.wait_until_healthy(timeout_s=240)
    [startup] = [json.loads(line.split("] ", 1)[1]) for line in lines if f'"event":"{STARTUP_EVENT}"' in line]
    assert startup["programs"] == 4 and startup["cached_programs"] == 4, "\n".join(lines)


def test_a_model_that_is_not_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model.tar.gz").write_bytes(b"")
    run = local_mode("compile-cache", "--model", str(tmp_path / "model.tar.gz"), cwd=tmp_path)
    assert run.returncode == 2 and "is not a model directory" in run.stdout
