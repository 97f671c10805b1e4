"""The whole app as app.py builds it: its stacks, cdk-nag on every synth, and reproducible offline synths."""

from __future__ import annotations

import json


def test_app_has_the_stacks_users_deploy(synthesized_app):
    assert "TrainingStack" in synthesized_app.stacks
    assert set(synthesized_app.stacks) <= {"TrainingStack", "EndpointStack"}


def test_cdk_nag_reports_nothing_unacknowledged(synthesized_app):
    """AWS Solutions and NIST 800-53 rev 5 findings on any stack, errors and warnings alike."""
    assert synthesized_app.nag_findings == []


def test_synth_is_reproducible_and_offline(synthesized_app, cdk_out):
    """The CLI's synth (no credentials, no Docker) and the in-process synth write the same templates: no
    AWS lookups, clocks or randomness leak into them."""
    for stack_id, in_process in synthesized_app.template_json.items():
        assert json.loads((cdk_out / f"{stack_id}.template.json").read_text()) == in_process, stack_id
