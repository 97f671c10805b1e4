"""Session-scoped synths shared by every stack test: one in-process synth and one real `cdk synth`.

* ``synthesized_app``: the whole app built exactly as app.py builds it (``stacks.app_builder.build_app``)
  from cdk.json's context, synthesized once per session, with a ``Template`` per stack id and the
  cdk-nag findings that were not acknowledged.
* ``cdk_out``: the cloud assembly written by the pinned CDK CLI (``cdk synth``), offline, with no AWS
  credentials and no Docker engine; the template linters (cfn-lint, checkov) read it. ``cli_assembly``
  gives the same for each endpoint mode (``endpointMode``), each synthesized once per session.
* ``synth_app``: a factory for the rare test that needs another context (each call costs a synth).
* ``definitions``: pipeline name -> definition, parsed once from ``synthesized_app``'s TrainingStack.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.stacks.cfn_values import pipeline_definitions
from tests.stacks.support import SynthesizedApp, cdk_json_context, run_cdk, synthesize


@pytest.fixture(scope="session")
def synthesized_app(tmp_path_factory: pytest.TempPathFactory) -> SynthesizedApp:
    """The app with cdk.json's defaults, synthesized once per session."""
    return synthesize(cdk_json_context(), tmp_path_factory.mktemp("synth") / "cdk.out")


@pytest.fixture(scope="session")
def definitions(synthesized_app: SynthesizedApp) -> dict[str, dict]:
    """Pipeline name -> definition, from the session's TrainingStack template (shared: do not mutate)."""
    return pipeline_definitions(synthesized_app.template_json["TrainingStack"])


@pytest.fixture(scope="session")
def synth_app(tmp_path_factory: pytest.TempPathFactory) -> Callable[[dict[str, Any]], SynthesizedApp]:
    """Synthesize the app with some context keys overridden (one full synth per call)."""

    def run(overrides: dict[str, Any]) -> SynthesizedApp:
        return synthesize({**cdk_json_context(), **overrides}, tmp_path_factory.mktemp("synth") / "cdk.out")

    return run


@pytest.fixture(scope="session")
def cdk_cli() -> Callable[[list[str]], subprocess.CompletedProcess]:
    """The pinned CDK CLI, run offline in the repository (see ``support.run_cdk``)."""
    return run_cdk


@pytest.fixture(scope="session")
def cli_assembly(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """The cloud assembly of a real `cdk synth` by the pinned CLI, run offline, for an endpoint mode
    (cdk.json's default mode with no extra context); each mode is synthesized once per session."""
    assemblies: dict[str, Path] = {}
    default_mode = cdk_json_context()["endpointMode"]

    def assembly(mode: str = default_mode) -> Path:
        if mode not in assemblies:
            outdir = tmp_path_factory.mktemp("cli") / "cdk.out"
            extra = [] if mode == default_mode else ["-c", f"endpointMode={mode}"]
            result = run_cdk(["synth", "--quiet", "--output", str(outdir), *extra])
            assert result.returncode == 0, (
                f"cdk synth failed:\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}"
            )
            assemblies[mode] = outdir
        return assemblies[mode]

    return assembly


@pytest.fixture(scope="session")
def cdk_out(cli_assembly: Callable[[str], Path]) -> Path:
    """The cloud assembly of a real `cdk synth` by the pinned CLI with cdk.json's defaults, run offline."""
    return cli_assembly()
