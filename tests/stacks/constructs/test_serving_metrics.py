"""The endpoint's log group and the metric filters built from the server's metric-line table.

From the session synth (cdk.json's defaults) and the construct alone in a bare stack: every field of
``jax_llm.contract.serving.LOG_METRICS`` becomes one filter on the endpoint's own log group, publishing into
that endpoint's namespace, and the log group exists, encrypted and retained, before the endpoint does.
"""

from __future__ import annotations

import re

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_kms as kms
from aws_cdk.assertions import Template

from jax_llm.contract.serving import LOG_METRICS, NAMESPACE
from stacks.constructs.serving_metrics import ServingMetrics
from stacks.settings import Settings
from tests.stacks.cfn_values import TemplateValues, resources_of_type
from tests.stacks.iam_evaluation import RolePolicies
from tests.stacks.support import cdk_json_context

# What CloudWatch accepts as a namespace (AWS::Logs::MetricFilter's MetricNamespace pattern).
CLOUDWATCH_NAMESPACE = re.compile(r"^[0-9a-zA-Z.\-_/#]{1,256}$")


@pytest.fixture(scope="module")
def template(synthesized_app) -> dict:
    return synthesized_app.template_json["EndpointStack"]


@pytest.fixture(scope="module")
def endpoint_name(synthesized_app) -> str:
    return synthesized_app.stacks["EndpointStack"].endpoint_name


def _of_type(template: dict, kind: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def _endpoint_log_group(template: dict, endpoint_name: str) -> tuple[str, dict]:
    found = {
        k: v
        for k, v in _of_type(template, "AWS::Logs::LogGroup").items()
        if v["Properties"].get("LogGroupName") == f"/aws/sagemaker/Endpoints/{endpoint_name}"
    }
    assert len(found) == 1, f"expected the endpoint's log group, found {sorted(found)}"
    return next(iter(found.items()))


def test_the_endpoint_log_group_is_created_encrypted_and_retained_before_the_endpoint(
    template, endpoint_name, synthesized_app
):
    log_group_id, log_group = _endpoint_log_group(template, endpoint_name)
    settings = Settings.from_context(synthesized_app.app)
    assert log_group["Properties"]["RetentionInDays"] == settings.storage.log_retention_days
    key_output = log_group["Properties"]["KmsKeyId"]["Fn::GetStackOutput"]
    assert key_output["StackName"] == "TrainingStack" and "EncryptionKey" in key_output["OutputName"]
    # removalPolicy retain: kept when the stack goes, and adoptable by --import-existing-resources.
    policies = (log_group["DeletionPolicy"], log_group["UpdateReplacePolicy"])
    assert policies == ("RetainExceptOnCreate", "Retain")
    (endpoint,) = _of_type(template, "AWS::SageMaker::Endpoint").values()
    assert log_group_id in endpoint["DependsOn"]


def test_the_endpoint_container_may_write_the_log_group_that_the_filters_read(
    synthesized_app, template, endpoint_name
):
    """SageMaker writes the container's stdout as the execution role, one stream per instance."""
    training = synthesized_app.template_json["TrainingStack"]
    (role_id,) = [
        k
        for k, v in resources_of_type(training, "AWS::IAM::Role").items()
        if v["Properties"].get("Description", "").startswith("SageMaker execution role")
    ]
    policies = RolePolicies.of(training, role_id)
    log_group_id, _ = _endpoint_log_group(template, endpoint_name)
    stream = TemplateValues(template).arn(log_group_id).removesuffix("*") + "log-stream:AllTraffic/i-0abc"
    for action in ("logs:CreateLogStream", "logs:PutLogEvents"):
        assert policies.allows(action, stream), action
    other = stream.replace("/aws/sagemaker/Endpoints/", "/aws/lambda/")
    assert not policies.allows("logs:PutLogEvents", other)


def test_one_metric_filter_per_field_of_the_contract_table(template, endpoint_name):
    log_group_id, _ = _endpoint_log_group(template, endpoint_name)
    filters = [f["Properties"] for f in _of_type(template, "AWS::Logs::MetricFilter").values()]
    assert len(filters) == len(LOG_METRICS)
    found = set()
    for f in filters:
        (transformation,) = f["MetricTransformations"]
        found.add(
            (
                f["FilterPattern"],
                transformation["MetricValue"],
                transformation["MetricNamespace"],
                transformation["MetricName"],
                transformation["Unit"],
            )
        )
    assert found == {
        (
            f'{{ $.event = "{m.event}" && $.{m.field} = * }}',
            f"$.{m.field}",
            f"{NAMESPACE}/{endpoint_name}",
            m.metric_name,
            m.unit,
        )
        for m in LOG_METRICS
    }
    assert all(f["LogGroupName"] == {"Ref": log_group_id} for f in filters)
    assert all(
        set(f["MetricTransformations"][0]) == {"MetricName", "MetricNamespace", "MetricValue", "Unit"}
        for f in filters
    )  # no dimensions, no default value: only lines that carry the field count
    assert CLOUDWATCH_NAMESPACE.fullmatch(f"{NAMESPACE}/{endpoint_name}")


def _bare(endpoint_names: list[str]) -> Template:
    stack = Stack(App(), "Bare")
    key = kms.Key(stack, "Key")
    storage = Settings.from_context(cdk_json_context()).storage
    for i, name in enumerate(endpoint_names):
        ServingMetrics(stack, f"Metrics{i}", endpoint_name=name, key=key, storage=storage, retain=True)
    return Template.from_stack(stack)


def test_two_endpoints_keep_their_metrics_apart():
    """Two stacks (two project names) in one account and region: two log groups, two namespaces."""
    template = _bare(["team-a-endpoint", "team-b-endpoint"]).to_json()
    groups = {
        k: v["Properties"]["LogGroupName"] for k, v in _of_type(template, "AWS::Logs::LogGroup").items()
    }
    assert sorted(groups.values()) == [
        "/aws/sagemaker/Endpoints/team-a-endpoint",
        "/aws/sagemaker/Endpoints/team-b-endpoint",
    ]
    for f in _of_type(template, "AWS::Logs::MetricFilter").values():
        endpoint = groups[f["Properties"]["LogGroupName"]["Ref"]].rsplit("/", 1)[1]
        assert f["Properties"]["MetricTransformations"][0]["MetricNamespace"] == f"{NAMESPACE}/{endpoint}"
