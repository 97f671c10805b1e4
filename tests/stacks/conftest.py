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

import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk.assertions import Template

from stacks.app_builder import build_app
from tests.stacks.cfn_values import pipeline_definitions
from tests.support import REPO

CDK_CLI = REPO / "node_modules" / ".bin" / "cdk"
# What the CLI adds to the context when it runs app.py (`cdk synth --no-version-reporting`), so that the
# in-process synth writes the templates the CLI writes.
CLI_CONTEXT = {
    "aws:cdk:enable-path-metadata": True,
    "aws:cdk:enable-asset-metadata": True,
    "aws:cdk:version-reporting": False,
}


@dataclass(frozen=True)
class NagFinding:
    """One cdk-nag violation that no acknowledgement covers."""

    pack: str
    rule: str
    severity: str
    path: str


@dataclass(frozen=True)
class SynthesizedApp:
    """An app synthesized in-process: its stacks, their templates and the unacknowledged nag findings."""

    app: App
    outdir: Path
    stacks: dict[str, Stack]
    templates: dict[str, Template]
    template_json: dict[str, dict[str, Any]]
    nag_findings: list[NagFinding]


def cdk_json_context() -> dict[str, Any]:
    """The context defaults in cdk.json (every setting plus the CDK feature flags)."""
    return json.loads((REPO / "cdk.json").read_text())["context"]


def synthesize(context: dict[str, Any], outdir: Path) -> SynthesizedApp:
    """Build the app from ``context`` like app.py does and synthesize it into ``outdir``.

    cdk-nag violations make ``App.synth`` raise after writing the templates and the validation report;
    they are returned as findings so that one test reports them all and the others still run.
    """
    app = build_app(App(context={**context, **CLI_CONTEXT}, outdir=str(outdir)))
    try:
        app.synth()
    except RuntimeError as error:
        if "ValidationFailed" not in str(error):
            raise
    report = json.loads((outdir / "validation-report.json").read_text())
    findings = [
        NagFinding(
            plugin["pluginName"], violation["ruleName"], violation["severity"], construct["constructPath"]
        )
        for plugin in report["pluginReports"]
        for violation in plugin["violations"]
        for construct in violation["violatingConstructs"]
    ]
    stacks = {child.node.id: child for child in app.node.children if isinstance(child, Stack)}
    template_json = {
        stack_id: json.loads((outdir / stack.template_file).read_text()) for stack_id, stack in stacks.items()
    }
    return SynthesizedApp(
        app,
        outdir,
        stacks,
        {stack_id: Template.from_json(t) for stack_id, t in template_json.items()},
        template_json,
        findings,
    )


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


def offline_environment() -> dict[str, str]:
    """An offline CI machine's environment: no AWS credentials, profile, metadata service or telemetry."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CDK_"))}
    env.update(
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        CDK_DISABLE_CLI_TELEMETRY="true",
        JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20",
    )
    return env


def run_cdk(args: list[str], cwd: Path = REPO) -> subprocess.CompletedProcess:
    """Run the pinned CDK CLI offline and return its completed process (output captured as text)."""
    return subprocess.run(
        [str(CDK_CLI), *args, "--no-notices", "--no-version-reporting"],
        cwd=cwd,
        env=offline_environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="session")
def cdk_cli() -> Callable[[list[str]], subprocess.CompletedProcess]:
    """The pinned CDK CLI, run offline in the repository (see ``run_cdk``)."""
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
