"""Fixtures for the ops CLI tests: fake credentials and a CLI runner (moto's server is in tests/conftest.py)."""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass

import pytest

from ops.cli import main

REGION = "us-east-1"


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """Fake credentials and region, and no way to reach a real account (no profile, no instance metadata)."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def moto(moto_server: str, aws_env: None) -> str:
    """A freshly reset moto server (no resources from earlier tests); yields its URL."""
    request = urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST")
    urllib.request.urlopen(request).close()
    return moto_server


@dataclass
class CliResult:
    """Exit code and captured output of one CLI run."""

    code: int
    out: str
    err: str


@pytest.fixture
def cli(moto: str, capsys: pytest.CaptureFixture[str]):
    """Runs `python -m ops --endpoint-url <moto> ARGS...` in-process and returns a CliResult."""

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        code = main(["--endpoint-url", moto, *args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run
