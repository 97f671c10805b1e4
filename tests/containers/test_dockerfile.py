"""containers/jax-llm/Dockerfile: hadolint-clean, same JAX pin as requirements.txt, SageMaker-shaped."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONTAINER = REPO / "containers" / "jax-llm"
HADOLINT = REPO / ".venv" / "bin" / "hadolint"


@pytest.fixture(scope="module")
def instructions() -> list[tuple[str, str]]:
    """The Dockerfile as (INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (CONTAINER / "Dockerfile").read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def index_of(instructions, keyword: str, pattern: str) -> int:
    """Position of the first ``keyword`` instruction whose arguments match ``pattern``."""
    for i, (k, args) in enumerate(instructions):
        if k == keyword and re.search(pattern, args):
            return i
    raise AssertionError(f"no {keyword} matching {pattern!r}")


def test_hadolint_finds_nothing():
    result = subprocess.run([str(HADOLINT), "--failure-threshold", "info", str(CONTAINER / "Dockerfile")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_jax_version_matches_requirements(instructions):
    (pin,) = re.findall(r"^jax==(\S+)$", (CONTAINER / "requirements.txt").read_text(), re.MULTILINE)
    args = dict(a.split("=", 1) for k, a in instructions if k == "ARG" and "=" in a)
    assert args["JAX_VERSION"] == pin
    install = instructions[index_of(instructions, "RUN", r"jax\[cuda12\]")][1]
    assert '"jax[cuda12]==${JAX_VERSION}"' in install
    # The CUDA wheels are skipped exactly when the CPU build argument is set.
    assert 'if [ -z "$CPU_ONLY" ]; then pip install --no-cache-dir "jax[cuda12]' in install
    assert "CPU_ONLY" in args and args["CPU_ONLY"] == '""'


def test_dependency_layer_comes_before_the_source_layer(instructions):
    copy_requirements = index_of(instructions, "COPY", r"^requirements\.txt ")
    install = index_of(instructions, "RUN", r"pip install --no-cache-dir -r /opt/jax-llm/requirements\.txt")
    copy_source = index_of(instructions, "COPY", r"^jax_llm/ ")
    assert copy_requirements < install < copy_source
    assert [k for k, _ in instructions[copy_source + 1:]] == ["ENV", "EXPOSE", "ENTRYPOINT"]


def test_gpu_build_installs_efa_and_the_nccl_plugin(instructions):
    efa = instructions[index_of(instructions, "RUN", r"efa_installer\.sh")][1]
    assert efa.startswith('if [ -z "$CPU_ONLY" ]; then')
    assert "--skip-kmod" in efa and "ofi-nccl" in efa


def test_entrypoint_is_exec_form_python_module(instructions):
    (entrypoint,) = [args for k, args in instructions if k == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["python", "-m", "jax_llm"]
    assert not [k for k, _ in instructions if k == "CMD"]  # SageMaker passes train/serve as the command


def test_nothing_is_put_under_opt_ml(instructions):
    assert [(k, a) for k, a in instructions if "/opt/ml" in a] == []


def test_base_image_is_pinned(instructions):
    (base,) = [args for k, args in instructions if k == "FROM"]
    name, _, tag = base.partition(":")
    assert tag and tag != "latest", base


def test_dockerignore_lets_only_the_image_inputs_in():
    lines = (CONTAINER / ".dockerignore").read_text().splitlines()
    patterns = [p for p in lines if p and not p.startswith("#")]
    assert patterns[0] == "*"
    assert {"!requirements.txt", "!jax_llm/"} <= set(patterns)
