"""cfn-lint and checkov over every template (and staged Dockerfile) that a real `cdk synth` writes.

The templates are found through the cloud assembly's manifest, so every stack the app gains later is
linted without changing this file. Each endpoint mode (a production variant, or inference components) is
synthesized and linted: they differ in EndpointStack's resources.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from stacks.settings.endpoint import ENDPOINT_MODES
from tests.support import REPO

CFN_LINT = REPO / ".venv" / "bin" / "cfn-lint"
CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"
# W3005 ("dependency already enforced by a GetAtt"): CDK adds an explicit DependsOn on a Lambda
# function's role; CloudFormation ignores the redundancy. Every other error, warning and note counts.
CFN_LINT_IGNORED = ["W3005"]


@pytest.fixture(scope="module", params=ENDPOINT_MODES)
def cdk_out(request: pytest.FixtureRequest, cli_assembly) -> Path:
    """The CLI's cloud assembly for each endpoint mode (synthesized once per mode per session)."""
    return cli_assembly(request.param)


@pytest.fixture(scope="module")
def templates(cdk_out: Path) -> list[Path]:
    """Every stack template in the cloud assembly."""
    manifest = json.loads((cdk_out / "manifest.json").read_text())
    found = [
        cdk_out / artifact["properties"]["templateFile"]
        for artifact in manifest["artifacts"].values()
        if artifact["type"] == "aws:cloudformation:stack"
    ]
    assert found, "the cloud assembly has no stack"
    return found


@pytest.fixture(scope="module")
def checkov_reports(cdk_out: Path) -> list[dict]:
    """checkov's reports (CloudFormation and Dockerfile) for the cloud assembly, run offline."""
    result = subprocess.run(
        [
            str(CHECKOV),
            "--directory",
            str(cdk_out),
            "--framework",
            "cloudformation",
            "dockerfile",
            "--skip-download",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode in (0, 1), result.stderr[-4000:]
    reports = json.loads(result.stdout)
    return reports if isinstance(reports, list) else [reports]


def test_synth_writes_the_training_stack(templates):
    assert "TrainingStack.template.json" in {t.name for t in templates}


def test_cfn_lint_reports_nothing(templates):
    result = subprocess.run(
        [
            str(CFN_LINT),
            "--format",
            "parseable",
            "--ignore-checks",
            *CFN_LINT_IGNORED,
            "--",
            *map(str, templates),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_checkov_scanned_the_templates_and_the_dockerfile(checkov_reports):
    scanned = {report["check_type"]: report["summary"]["resource_count"] for report in checkov_reports}
    assert scanned.get("cloudformation", 0) > 0 and scanned.get("dockerfile", 0) >= 1, scanned


def test_checkov_has_no_failed_check(checkov_reports):
    failed = [
        f"{check['check_id']} {check['resource']} ({check['file_path']}): {check['check_name']}"
        for report in checkov_reports
        for check in report["results"]["failed_checks"]
    ]
    assert failed == []


def test_every_checkov_skip_gives_a_reason(checkov_reports):
    skipped = [check for report in checkov_reports for check in report["results"].get("skipped_checks", [])]
    unexplained = [
        f"{check['check_id']} {check['resource']}"
        for check in skipped
        if len(check["check_result"].get("suppress_comment", "").strip()) < 20
    ]
    assert skipped and unexplained == []
