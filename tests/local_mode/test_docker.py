"""--docker: the `docker run` SageMaker local mode would issue, and the fallback where no engine answers."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from local_mode import docker
from local_mode.tree import lay_out_training_tree


def test_run_mounts_the_tree_at_opt_ml_and_passes_the_sagemaker_argument(tmp_path: Path) -> None:
    paths = lay_out_training_tree(
        tmp_path / "algo-2",
        hyperparameters={},
        channels={},
        current_host="algo-2",
        hosts=["algo-1", "algo-2"],
    )
    engine = docker.DockerEngine(gpu=True)
    argv = engine.run_argv(
        paths,
        ["train"],
        hostname="algo-2",
        env={"TRAINING_JOB_NAME": "j"},
        network="j-net",
        coordinator="algo-1:5555",
    )
    assert argv[:3] == ["docker", "run", "--rm"]
    assert argv[-2:] == [docker.IMAGE_TAG, "train"]  # the image's ENTRYPOINT gets `train`, as on SageMaker
    assert f"{paths.root}:/opt/ml" in argv
    assert argv[argv.index("--hostname") + 1] == "algo-2"
    assert argv[argv.index("--network-alias") + 1] == "algo-2"  # algo-N resolve to each other on the network
    assert "JAX_COORDINATOR_ADDRESS=algo-1:5555" in argv and "TRAINING_JOB_NAME=j" in argv
    assert argv[argv.index("--gpus") + 1] == "all"

    serving = docker.DockerEngine(gpu=False).run_argv(paths, ["serve"], hostname="algo-1", env={}, port=9123)
    assert "127.0.0.1:9123:8080" in serving and "--gpus" not in serving


def test_cpu_machines_build_the_cpu_variant_of_the_image() -> None:
    dockerfile = (docker.CONTEXT / "Dockerfile").read_text()
    argv = docker.DockerEngine(gpu=False).build_argv()
    build_arg = argv[argv.index("--build-arg") + 1]
    assert f"ARG {build_arg.split('=')[0]}=" in dockerfile  # the argument the Dockerfile actually declares
    assert argv[-1] == str(docker.CONTEXT)
    assert "--build-arg" not in docker.DockerEngine(gpu=True).build_argv()


@pytest.mark.skipif(
    shutil.which("docker") is not None and docker.unreachable_reason() is None,
    reason="a Docker engine is reachable here",
)
def test_without_an_engine_docker_mode_says_so_and_falls_back_to_host_processes() -> None:
    said: list[str] = []
    assert docker.engine(True, log=said.append) is None
    (line,) = said
    assert "no Docker engine reachable" in line and "host processes" in line
    assert docker.engine(False, log=said.append) is None and len(said) == 1  # not asked: nothing said
