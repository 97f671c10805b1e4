"""`python -m local_mode transform`: the records read as a Line-split transform job reads them, and a record
the container refuses failing the job by its line, nothing written (the image test runs the whole job)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from local_mode.transform import TransformError, read_records

from .test_runner import local_mode


def test_each_line_is_one_record_numbered_as_in_the_file_and_blank_lines_are_skipped(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"inputs": "a"}\n\n{"inputs": "b"}\n')
    assert read_records(prompts, 6) == [(1, b'{"inputs": "a"}'), (3, b'{"inputs": "b"}')]


def test_an_oversized_record_an_empty_input_and_a_missing_one_are_refused_before_anything_runs(
    tmp_path: Path,
) -> None:
    big = tmp_path / "big.jsonl"
    big.write_bytes(b'{"inputs": "a"}\n' + b"x" * (1024 * 1024 + 1) + b"\n")
    with pytest.raises(TransformError, match="big.jsonl:2: a record of 1048577 bytes exceeds 1 MB"):
        read_records(big, 1)
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(TransformError, match="holds no records"):
        read_records(tmp_path / "empty.jsonl", 6)
    with pytest.raises(TransformError, match="does not exist"):
        read_records(tmp_path / "nope.jsonl", 6)


@pytest.mark.slow
def test_a_record_the_container_refuses_fails_the_job_by_its_line(tmp_path: Path, tiny_training_run) -> None:
    prompts = tmp_path / "prompts.jsonl"
    lines = [{"inputs": "def ", "parameters": {"max_new_tokens": 2}}] * 3
    lines[1] = {"inputs": "def ", "parameters": {"max_new_tokens": -5}}
    prompts.write_text("".join(json.dumps(line) + "\n" for line in lines))
    run = local_mode(
        "transform",
        "--workdir",
        str(tmp_path / "work"),
        "--model",
        str(tiny_training_run.model_dir),
        "--input",
        str(prompts),
        "--output",
        str(tmp_path / "out"),
        cwd=tmp_path,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert "transform job failed: prompts.jsonl:2: /invocations answered 422" in run.stdout
    assert not (tmp_path / "out").exists()
