"""EndpointStack as a whole: its outputs, and cdk-nag and cfn-lint on both variants."""

from __future__ import annotations

import json
import subprocess

from tests.stacks.endpoint_stack.templates import one_resource
from tests.support import REPO


def test_outputs_name_the_endpoint_and_show_an_invocation(synthesized_app, settings):
    outputs = synthesized_app.template_json["EndpointStack"]["Outputs"]
    endpoint_id, _ = one_resource(synthesized_app.templates["EndpointStack"], "AWS::SageMaker::Endpoint")
    assert outputs["EndpointName"]["Value"] == {"Fn::GetAtt": [endpoint_id, "EndpointName"]}
    example = outputs["ExampleInvocation"]["Value"]
    assert "python -m ops invoke" in example
    assert f"--endpoint-name {settings.project.name}-endpoint" in example
    body = example.split("--body '")[1].split("'")[0]
    assert json.loads(body) == {"inputs": "Once upon a time", "parameters": {"max_new_tokens": 32}}


def test_no_unacknowledged_nag_finding_in_either_variant(synthesized_app, pinned):
    findings = [
        f
        for app in (synthesized_app, pinned)
        for f in app.nag_findings
        if f.path.startswith("EndpointStack/")
    ]
    assert findings == []


def test_cfn_lint_passes_the_pinned_variant(pinned):
    """The default variant is linted with every template (test_templates_lint.py); this one differs in
    shape (literal ARN, volume key, linear steps, no capture, no autoscaling)."""
    template = pinned.outdir / pinned.stacks["EndpointStack"].template_file
    result = subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "cfn-lint"),
            "--format",
            "parseable",
            "--ignore-checks",
            "W3005",
            "--",
            str(template),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
