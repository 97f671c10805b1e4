"""What the stack tests share besides fixtures: cdk.json's context, how the app is synthesized in-process
(with its unacknowledged cdk-nag findings), and how the pinned CDK CLI runs offline.

Fixtures (the session's synths, the CLI's cloud assemblies, the pipeline definitions) live in `conftest.py`
and are built from these; test modules import from here, never from a conftest.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_cdk import App, Stack
from aws_cdk.assertions import Template

from stacks.app_builder import build_app
from tests.support import REPO

__all__ = [
    "CDK_CLI",
    "CLI_CONTEXT",
    "NagFinding",
    "SynthesizedApp",
    "cdk_json_context",
    "offline_environment",
    "run_cdk",
    "synthesize",
]

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
