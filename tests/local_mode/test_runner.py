"""The runner: real entry points on local trees; bad input stops it with the container's own clear errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from local_mode.demo import build_corpus
from local_mode.runner import REPO, HostCommand, _run_hosts, run_processing

OUTPUTS = ("tokenizer", "train", "validation")


def local_mode(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`python -m local_mode ...` as a user runs it."""
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'containers' / 'jax-llm'}"}
    return subprocess.run(
        [sys.executable, "-m", "local_mode", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def raw_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw = tmp_path_factory.mktemp("corpus") / "raw"
    files, size = build_corpus(raw, 300_000)
    assert files > 5 and size > 200_000
    return raw


def test_prepare_runs_as_a_processing_job_and_uploads_its_outputs(tmp_path: Path, raw_corpus: Path) -> None:
    outputs = {name: tmp_path / "s3" / name for name in OUTPUTS}
    result = run_processing(
        tmp_path / "work",
        "prep",
        inputs={"raw": raw_corpus},
        outputs=outputs,
        arguments=["prepare", "--vocab-size", "300", "--validation-fraction", "0.1"],
        log=lambda line: None,
    )
    assert result.ok, result.log
    tokenizer = json.loads((outputs["tokenizer"] / "tokenizer.json").read_text())
    assert len(tokenizer["model"]["vocab"]) == 300
    assert any(outputs["train"].iterdir()) and any(outputs["validation"].iterdir())
    tree = result.trees["algo-1"]
    assert (tree.processing / "input" / "raw").is_dir()  # the input as the job saw it


def test_a_failed_processing_job_reports_the_containers_message(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    run = local_mode(
        "prepare",
        "--workdir",
        str(tmp_path / "work"),
        "--raw",
        str(tmp_path / "empty"),
        "--output",
        str(tmp_path / "s3"),
        cwd=tmp_path,
    )
    assert run.returncode == 1
    (message_file,) = (tmp_path / "work").glob("*/processing-tree/output/message")
    message = message_file.read_text().strip()
    assert (
        message and message.splitlines()[0] in run.stdout
    )  # the ExitMessage, surfaced as SageMaker shows it
    assert not (tmp_path / "s3").exists()  # a failed job uploads nothing


def test_a_missing_data_directory_stops_the_runner_before_anything_runs(tmp_path: Path) -> None:
    run = local_mode(
        "train",
        "--workdir",
        str(tmp_path / "work"),
        "--train",
        str(tmp_path / "nope"),
        "--hp",
        "preset=tiny",
        cwd=tmp_path,
    )
    assert run.returncode == 2
    assert f"channel 'train' ({tmp_path / 'nope'}): the data directory does not exist" in run.stdout
    assert not (tmp_path / "work").exists()


def test_a_malformed_hyperparameter_argument_is_a_usage_error(tmp_path: Path) -> None:
    run = local_mode("train", "--train", str(tmp_path), "--hp", "preset", cwd=tmp_path)
    assert run.returncode == 2 and "expected key=value" in run.stderr


def test_when_one_host_fails_the_others_are_stopped_and_the_job_fails() -> None:
    """As SageMaker stops a job's other instances when one exits non-zero (SIGTERM first)."""
    env = dict(os.environ)
    started = time.monotonic()
    codes, log = _run_hosts(
        {
            "algo-1": HostCommand(
                [sys.executable, "-c", "import time; print('waiting', flush=True); time.sleep(120)"],
                env,
            ),
            "algo-2": HostCommand(
                [sys.executable, "-c", "import time, sys; time.sleep(1); print('bad input'); sys.exit(3)"],
                env,
            ),
        },
        log=lambda line: None,
    )
    assert codes == {"algo-1": -signal.SIGTERM, "algo-2": 3}
    assert time.monotonic() - started < 30
    assert "[algo-1] waiting" in log and "[algo-2] bad input" in log
