"""containers/jax-llm/Dockerfile: hadolint-clean, same JAX pin as requirements.txt, SageMaker-shaped."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from tests.support import CONTAINER_SRC, REPO

CONTAINER = CONTAINER_SRC
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
    result = subprocess.run(
        [str(HADOLINT), "--failure-threshold", "info", str(CONTAINER / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_each_variant_installs_its_own_lock_with_hash_checking(instructions):
    install = instructions[index_of(instructions, "RUN", r"pip install")][1]
    assert (
        'if [ "$VARIANT" = cpu ]; then lock=requirements.lock; else lock=requirements-cuda.lock; fi'
        in install
    )
    assert '--require-hashes -r "/opt/jax-llm/$lock"' in install  # every file checked against the lock
    assert "--mount=type=secret,id=pip-ca,required=false" in install  # a proxy's CA, never in a layer
    baked = [
        a for k, a in instructions if k in ("COPY", "ADD", "ENV", "ARG") and re.search(r"PIP_CERT|\.crt\b", a)
    ]
    assert baked == []


def test_dependency_layer_comes_before_the_source_layer(instructions):
    copy_locks = index_of(instructions, "COPY", r"^requirements\.lock requirements-cuda\.lock ")
    install = index_of(instructions, "RUN", r"pip install --no-cache-dir --require-hashes")
    copy_source = index_of(instructions, "COPY", r"^jax_llm/ ")
    assert copy_locks < install < copy_source
    assert [k for k, _ in instructions[copy_source + 1 :]] == ["ENV", "EXPOSE", "ENTRYPOINT", "CMD"]


def _stages(instructions) -> dict[str, str]:
    """Stage name -> what it is built FROM."""
    return {a.split()[2]: a.split()[0] for k, a in instructions if k == "FROM" and " AS " in a}


def test_the_variant_picks_a_stage_and_only_the_gpu_one_installs_efa(instructions):
    stages = _stages(instructions)
    args = dict(a.split("=", 1) for k, a in instructions if k == "ARG" and "=" in a)
    assert stages["image"] == "platform-${VARIANT}" and args["VARIANT"] == "gpu"  # the GPU image by default
    assert {stages["platform-cpu"], stages["platform-gpu-no-efa"], stages["platform-gpu"]} == {"os"}
    gpu_stage = instructions.index(("FROM", "os AS platform-gpu"))
    efa = index_of(instructions, "RUN", r"efa_installer\.sh")
    assert gpu_stage < efa < index_of(instructions, "FROM", r"AS image$")  # inside the GPU stage alone
    assert "--skip-kmod" in instructions[efa][1] and "ofi-nccl" in instructions[efa][1]


def test_entrypoint_is_exec_form_python_module(instructions):
    (entrypoint,) = [args for k, args in instructions if k == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["python", "-m", "jax_llm"]


def test_a_bare_start_trains(instructions):
    # SageMaker passes train/serve as the command, which replaces CMD; a launcher that passes nothing
    # (SDK v3's ModelTrainer without source code, a plain `docker run IMAGE`) must train, not print usage.
    (command,) = [args for k, args in instructions if k == "CMD"]
    assert json.loads(command) == ["train"]


def test_nothing_is_put_under_opt_ml(instructions):
    assert [(k, a) for k, a in instructions if "/opt/ml" in a] == []


def test_the_base_is_debian_12_by_default_and_a_build_argument(instructions):
    args = dict(a.split("=", 1) for k, a in instructions if k == "ARG" and "=" in a)
    assert args["BASE_IMAGE"] == "docker.io/library/debian:bookworm-slim"  # the OS CI makes with mmdebstrap
    assert _stages(instructions)["os"] == "${BASE_IMAGE}"


def test_dockerignore_lets_only_the_image_inputs_in():
    lines = (CONTAINER / ".dockerignore").read_text().splitlines()
    patterns = [p for p in lines if p and not p.startswith("#")]
    assert patterns[0] == "*"
    assert {"!requirements.lock", "!requirements-cuda.lock", "!jax_llm/"} <= set(patterns)


def test_the_compiler_stays_in_the_dependencies_stage_and_the_image_copies_only_the_venv(instructions):
    image = index_of(instructions, "FROM", r"AS image$")
    compiler = index_of(instructions, "RUN", r"apt-get install .*\bgcc\b")
    assert index_of(instructions, "FROM", r"AS dependencies$") < compiler < image
    assert instructions[image + 1] == ("COPY", "--from=dependencies /opt/venv /opt/venv")
    assert not [a for k, a in instructions[image:] if k == "RUN"]  # nothing built in the shipped stage
