"""The image, built once per session from containers/jax-llm, and the jobs every image test shares.

Every test here runs SageMaker's jobs in containers of that image, through local mode's runner (what
`python -m local_mode ... --docker` runs). On a machine where neither Docker nor Podman answers they are
reported as NOT RUN, in the summary too; under CI (`CI` set) that is an error, never a skip: `.ci/run`
installs Podman before the tests.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from local_mode import container_engine
from local_mode.container_engine import ContainerEngine
from tests.image import sdk
from tests.image.support import NOT_RUN, ImageJob, SdkClient, train_in_image
from tests.support import write_stdlib_corpus


@pytest.fixture(scope="session")
def image() -> ContainerEngine:
    """The CPU image, built once (the base pulled, or made with mmdebstrap where no registry answers)."""
    name, reasons = container_engine.find_engine()
    if name is None:
        message = (
            f"NO CONTAINER ENGINE: the image tests did not run ({'; '.join(reasons)}); "
            f"{container_engine.INSTALL}"
        )
        if os.environ.get("CI"):
            pytest.fail(f"{message}. CI must run them: .ci/run installs Podman first.")
        NOT_RUN.append(message)
        pytest.skip(message)
    # CPU: tests never have a GPU. JAX_LLM_TEST_IMAGE names another tag, so that two checkouts testing at
    # once on one machine do not replace each other's image.
    engine = ContainerEngine(name, tag=os.environ.get("JAX_LLM_TEST_IMAGE", "localhost/jax-llm:test"))
    start = time.monotonic()
    engine.build(log=print)
    print(f"image {engine.tag} built with {name} in {time.monotonic() - start:.0f} s")
    return engine


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    """The `train` channel: raw text (stdlib sources), tokenized inside the job."""
    return write_stdlib_corpus(tmp_path_factory.mktemp("image-corpus") / "train" / "train.txt").parent


@pytest.fixture(scope="session")
def trained_in_image(image, corpus, tmp_path_factory) -> ImageJob:
    """One host, 80 tiny steps, in a container with no network: shared by training and serving tests."""
    job = train_in_image(
        image, tmp_path_factory.mktemp("image-train"), "image-one-host", channels={"train": corpus}
    )
    if not job.result.ok:
        pytest.fail(f"training in the image failed: {job.result.failure_reason}\n{job.log[-3000:]}")
    return job


@pytest.fixture(scope="session")
def sdk_client(image, tmp_path_factory) -> Iterator[SdkClient]:
    """The engine's Docker API (Podman's service, started here and stopped at the end) for the SDK's local
    mode, and a compose tool; under CI a missing compose tool is an error (.ci/install-container-engine)."""
    tool = sdk.compose_tool()
    if tool is None:
        message = "NO COMPOSE TOOL: the SageMaker SDK tests did not run (apt-get install docker-compose)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}. CI must run them: .ci/install-container-engine installs it.")
        NOT_RUN.append(message)
        pytest.skip(message)
    directory = tmp_path_factory.mktemp("sdk")
    with sdk.docker_api(image.name, directory) as docker_host:
        yield SdkClient(sdk.offline_environment(docker_host, directory), image.name)


def pytest_terminal_summary(terminalreporter) -> None:
    """Says it at the end too, where nobody misses it, when the image tests did not run."""
    if NOT_RUN:
        terminalreporter.write_sep("!", "IMAGE TESTS NOT RUN", red=True, bold=True)
        terminalreporter.write_line(NOT_RUN[0], red=True)
