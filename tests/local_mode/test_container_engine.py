"""--docker: the command lines SageMaker's local mode would issue, engine choice, and the no-engine fallback.

The containers themselves run in tests/image/, on the image built once per session.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from jax_llm.contract.paths import IMAGE_SOURCE
from local_mode import base_image, container_engine
from local_mode.container_engine import ContainerEngine, EngineError


def test_a_training_host_mounts_its_tree_at_opt_ml_answers_to_its_name_and_gets_train(tmp_path: Path) -> None:
    argv = ContainerEngine("podman").run_argv(
        tmp_path,
        ["train"],
        container="job-algo-2",
        hostname="algo-2",
        env={"TRAINING_JOB_NAME": "j"},
        network="j-net",
    )
    assert argv[:3] == ["podman", "run", "--rm"]
    assert argv[-2:] == [container_engine.IMAGE_TAG, "train"]  # the ENTRYPOINT gets `train`, as on SageMaker
    assert f"{tmp_path}:/opt/ml" in argv
    assert argv[argv.index("--name") + 1] == "job-algo-2"  # what `podman stop` names
    assert argv[argv.index("--hostname") + 1] == "algo-2"
    assert argv[argv.index("--network") + 1] == "j-net"
    assert argv[argv.index("--network-alias") + 1] == "algo-2"  # algo-N resolve to each other on the network
    assert "TRAINING_JOB_NAME=j" in argv
    assert not any("JAX_COORDINATOR_ADDRESS" in a for a in argv)  # hosts meet at algo-1, as on SageMaker


def test_one_training_host_is_isolated_and_an_endpoint_publishes_8080_on_the_loopback(tmp_path: Path) -> None:
    engine = ContainerEngine("docker")
    isolated = engine.run_argv(tmp_path, ["train"], container="c", hostname="algo-1", env={})
    assert isolated[isolated.index("--network") + 1] == "none" and "--network-alias" not in isolated
    serving = engine.run_argv(
        tmp_path, ["serve"], container="s", hostname="algo-1", env={}, network=None, port=9123
    )
    assert "--network" not in serving  # the engine's default bridge, which publishing needs
    assert serving[serving.index("--publish") + 1] == "127.0.0.1:9123:8080"


def test_gpus_are_requested_in_each_engine_s_own_words(tmp_path: Path) -> None:
    docker = ContainerEngine("docker", gpu=True).run_argv(
        tmp_path, ["train"], container="c", hostname="h", env={}
    )
    podman = ContainerEngine("podman", gpu=True).run_argv(
        tmp_path, ["train"], container="c", hostname="h", env={}
    )
    assert docker[docker.index("--gpus") + 1] == "all"
    assert podman[podman.index("--device") + 1] == "nvidia.com/gpu=all"  # CDI, as podman names GPUs
    assert "--gpus" not in ContainerEngine("docker").run_argv(
        tmp_path, [], container="c", hostname="h", env={}
    )


def test_stop_is_sigterm_then_sigkill_after_the_grace_period() -> None:
    assert ContainerEngine("podman").stop_argv("job-algo-1", 30) == [
        "podman",
        "stop",
        "--time",
        "30",
        "job-algo-1",
    ]


def test_the_build_uses_arguments_the_dockerfile_declares_and_hands_the_ca_over_as_a_secret(
    tmp_path: Path,
) -> None:
    dockerfile = (IMAGE_SOURCE / "Dockerfile").read_text()
    bundle = tmp_path / "ca.crt"
    argv = ContainerEngine("podman").build_argv("localhost/base:1", bundle)
    build_args = dict(argv[i + 1].split("=", 1) for i, a in enumerate(argv) if a == "--build-arg")
    assert build_args == {"VARIANT": "cpu", "BASE_IMAGE": "localhost/base:1"}
    for name in build_args:
        assert re.search(rf"^ARG {name}\b", dockerfile, re.MULTILINE), name
    for variant in ("cpu", "gpu"):  # each VARIANT the engine asks for names a stage
        assert re.search(rf"^FROM \S+ AS platform-{variant}$", dockerfile, re.MULTILINE), variant
    assert argv[argv.index("--secret") + 1] == f"id=pip-ca,src={bundle}"
    assert "--mount=type=secret,id=pip-ca" in dockerfile  # the id the Dockerfile mounts
    assert argv[argv.index("--format") + 1] == "docker"  # podman's OCI format would drop SHELL
    assert argv[-1] == str(IMAGE_SOURCE)
    gpu = ContainerEngine("docker", gpu=True).build_argv("b")
    assert "VARIANT=gpu" in gpu and "--secret" not in gpu and "--format" not in gpu


def test_the_ca_bundle_is_the_one_pip_trusts_here_and_only_when_it_exists(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.crt"
    assert container_engine.build_ca_bundle({"PIP_CERT": str(bundle)}) is None
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    assert container_engine.build_ca_bundle({"PIP_CERT": str(bundle)}) == bundle
    assert container_engine.build_ca_bundle({}) is None


def test_a_forced_engine_must_be_one_of_the_two() -> None:
    with pytest.raises(EngineError, match=r"LOCAL_MODE_ENGINE='rkt': allowed values are docker, podman"):
        container_engine.find_engine({"LOCAL_MODE_ENGINE": "rkt"})


def test_without_an_engine_docker_mode_says_so_and_falls_back_to_host_processes(monkeypatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")  # neither client can be found
    monkeypatch.delenv(container_engine.ENGINE_VARIABLE, raising=False)
    said: list[str] = []
    assert container_engine.engine(True, log=said.append) is None
    (line,) = said
    assert "no container engine answers (docker is not installed; podman is not installed)" in line
    assert "running host processes instead" in line
    assert (
        container_engine.engine(False, log=said.append) is None and len(said) == 1
    )  # not asked: nothing said


def fake_cli(bin_dir: Path, name: str, answers: dict[str, str]) -> None:
    """An executable `name` on PATH answering each argument line in `answers` (a shell `case`), else failing
    as the real CLI does for a command it lacks. The CLI's answer is what the engine choice reads."""
    cases = [f'  "{argv}") echo {answer!r}; exit 0;;' for argv, answer in answers.items()]
    script = bin_dir / name
    script.write_text(
        "\n".join(
            [
                "#!/bin/sh",
                'case "$*" in',
                *cases,
                f'  *) echo "{name}: unknown command: $*" >&2; exit 1;;',
                "esac",
                "",
            ]
        )
    )
    script.chmod(0o755)


DOCKER_WITH_A_DAEMON = {"version --format {{.Server.Version}}": "28.2.2"}
PODMAN_THAT_RUNS = {"info --format {{.Host.OCIRuntime.Name}}": "runc"}


def test_docker_without_buildx_is_passed_over_for_podman(tmp_path: Path, monkeypatch) -> None:
    # Seen here: a docker CLI answering through Podman's API socket, no buildx plugin: the legacy builder
    # then fails the build with `unknown flag: --secret`.
    fake_cli(tmp_path, "docker", DOCKER_WITH_A_DAEMON)
    fake_cli(tmp_path, "podman", PODMAN_THAT_RUNS)
    monkeypatch.setenv("PATH", str(tmp_path))
    name, reasons = container_engine.find_engine({})
    assert name == "podman"
    (reason,) = reasons
    assert "cannot build with a secret" in reason and "docker-buildx-plugin" in reason


def test_docker_with_buildkit_comes_first(tmp_path: Path, monkeypatch) -> None:
    fake_cli(
        tmp_path, "docker", {**DOCKER_WITH_A_DAEMON, "buildx version": "github.com/docker/buildx v0.24.0"}
    )
    fake_cli(tmp_path, "podman", PODMAN_THAT_RUNS)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert container_engine.find_engine({}) == ("docker", [])


def test_docker_without_buildx_and_no_podman_names_what_to_install(tmp_path: Path, monkeypatch) -> None:
    fake_cli(tmp_path, "docker", DOCKER_WITH_A_DAEMON)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv(container_engine.ENGINE_VARIABLE, raising=False)
    said: list[str] = []
    assert container_engine.engine(True, log=said.append) is None
    (line,) = said
    assert "legacy builder rejects --secret" in line and "podman is not installed" in line
    assert "apt-get install podman runc" in line and "docker-buildx-plugin" in line


def test_a_forced_engine_that_cannot_run_is_an_error_not_a_silent_fallback(monkeypatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv(container_engine.ENGINE_VARIABLE, "podman")
    with pytest.raises(EngineError, match="podman is not installed"):
        container_engine.engine(True, log=print)


def test_container_names_are_ones_the_engines_accept() -> None:
    assert (
        container_engine.container_name("jax-llm-train 2026/11", "algo-1") == "jax-llm-train-2026-11-algo-1"
    )


def test_the_shipped_base_is_debian_12_and_a_local_one_gets_debian_s_own_sources() -> None:
    assert base_image.dockerfile_default() == "docker.io/library/debian:bookworm-slim"
    assert base_image.debian_sources("http://deb.debian.org/debian") == [
        "deb http://deb.debian.org/debian bookworm main",
        "deb http://deb.debian.org/debian bookworm-updates main",
        "deb http://deb.debian.org/debian-security bookworm-security main",
    ]


def test_without_mmdebstrap_or_a_registry_the_error_says_what_to_install(monkeypatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(base_image.BaseImageError, match=r"apt-get install mmdebstrap.*LOCAL_MODE_BASE_IMAGE"):
        base_image.make_local_base("podman", log=print)
