"""The lookup's Lambda handler, the very file inlined in EndpointStack, run against moto's SageMaker.

The handler PUTs its CloudFormation response to the request's pre-signed ResponseURL: here that is a
local HTTP server, so the test reads exactly what CloudFormation would receive.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import SimpleNamespace

import boto3
import pytest
from moto import mock_aws

from stacks.constructs.model_package_lookup import DESCRIBE_ACTION, LOOKUP_ACTION
from stacks.constructs.model_package_lookup_handler import index as lookup
from tests.stacks.constructs.model_packages import FAKE_AWS_ENV, GROUP, PREFIX, register


class _ResponseCollector(BaseHTTPRequestHandler):
    """Stores each PUT body (what CloudFormation would receive) on the server."""

    def do_PUT(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.responses.append((self.headers.get("Content-Type"), json.loads(body)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def response_url() -> Iterator[tuple[str, list]]:
    """A local stand-in for CloudFormation's pre-signed response URL; yields (url, received responses)."""
    server = HTTPServer(("127.0.0.1", 0), _ResponseCollector)
    server.responses = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/response?signature=x", server.responses
    server.shutdown()
    server.server_close()


@pytest.fixture
def sagemaker(monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """moto's SageMaker in-process, with fake credentials and a region as the Lambda runtime provides."""
    for name, value in {
        **FAKE_AWS_ENV,
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        client = boto3.client("sagemaker")
        client.create_model_package_group(ModelPackageGroupName=GROUP)
        yield client


def _register(client, status: str) -> str:
    return register(client, status)


def _event(request_type: str, url: str, **extra) -> dict:
    return {
        "RequestType": request_type,
        "ResponseURL": url,
        "StackId": "arn:aws:cloudformation:stack/EndpointStack",
        "RequestId": "req-1",
        "LogicalResourceId": "Lookup",
        "ResourceType": "Custom::NewestApprovedModelPackage",
        "ResourceProperties": {"ServiceToken": "arn:fn", "ModelPackageGroupName": GROUP, "LookupToken": ""},
        **extra,
    }


CONTEXT = SimpleNamespace(log_stream_name="2026/11/22/[$LATEST]abc")


def test_create_returns_the_newest_approved_version(sagemaker, response_url):
    url, responses = response_url
    approved_old = _register(sagemaker, "Approved")
    approved_new = _register(sagemaker, "Approved")
    _register(sagemaker, "PendingManualApproval")  # newer, but not approved
    _register(sagemaker, "Rejected")
    assert approved_old != approved_new
    lookup.handler(_event("Create", url), CONTEXT)
    ((content_type, response),) = responses
    assert content_type == ""  # the pre-signed URL is signed for an empty content type
    assert response == {
        "Status": "SUCCESS",
        "Reason": "",
        "PhysicalResourceId": approved_new,
        "StackId": "arn:aws:cloudformation:stack/EndpointStack",
        "RequestId": "req-1",
        "LogicalResourceId": "Lookup",
        "Data": {"ModelPackageArn": approved_new},
    }


def test_update_after_a_new_approval_moves_to_it(sagemaker, response_url):
    url, responses = response_url
    first = _register(sagemaker, "Approved")
    pending = _register(sagemaker, "PendingManualApproval")
    sagemaker.update_model_package(ModelPackageArn=pending, ModelApprovalStatus="Approved")
    lookup.handler(_event("Update", url, PhysicalResourceId=first), CONTEXT)
    assert responses[0][1]["Data"] == {"ModelPackageArn": pending}


def test_no_approved_version_fails_the_deploy_with_how_to_approve(sagemaker, response_url):
    url, responses = response_url
    _register(sagemaker, "PendingManualApproval")
    lookup.handler(_event("Create", url), CONTEXT)
    response = responses[0][1]
    assert response["Status"] == "FAILED"
    assert response["Reason"].startswith(f"Model package group {GROUP} has no Approved version to deploy.")
    assert "python -m ops approve" in response["Reason"]
    assert "cdk deploy EndpointStack -c modelPackageArn=" in response["Reason"]


def test_delete_succeeds_without_calling_aws(response_url, monkeypatch):
    url, responses = response_url
    monkeypatch.setattr(lookup.boto3, "client", None)  # any AWS call would raise TypeError
    lookup.handler(_event("Delete", url, PhysicalResourceId="arn:old"), CONTEXT)
    assert responses[0][1]["Status"] == "SUCCESS" and responses[0][1]["PhysicalResourceId"] == "arn:old"


def test_an_unexpected_error_is_reported_not_left_hanging(sagemaker, response_url):
    url, responses = response_url
    event = _event("Create", url)
    del event["ResourceProperties"]["ModelPackageGroupName"]  # a template that forgot the property
    lookup.handler(event, CONTEXT)
    response = responses[0][1]
    assert response["Status"] == "FAILED"
    assert response["Reason"] == f"KeyError: 'ModelPackageGroupName' (log stream {CONTEXT.log_stream_name})"


def test_a_requested_approved_version_is_served_even_when_a_newer_one_is_approved(sagemaker, response_url):
    """The release function's parameter wins over the newest Approved (e.g. a rollout still under way)."""
    url, responses = response_url
    requested = _register(sagemaker, "Approved")
    _register(sagemaker, "Approved")
    event = _event("Update", url, PhysicalResourceId="arn:old")
    event["ResourceProperties"]["Requested"] = requested
    lookup.handler(event, CONTEXT)
    assert responses[0][1]["Status"] == "SUCCESS"
    assert responses[0][1]["Data"] == {"ModelPackageArn": requested}


def test_a_requested_version_that_is_no_longer_approved_fails_the_update(sagemaker, response_url):
    url, responses = response_url
    requested = _register(sagemaker, "Approved")
    sagemaker.update_model_package(ModelPackageArn=requested, ModelApprovalStatus="Rejected")
    event = _event("Update", url, PhysicalResourceId="arn:old")
    event["ResourceProperties"]["Requested"] = requested
    lookup.handler(event, CONTEXT)
    response = responses[0][1]
    assert response["Status"] == "FAILED"
    assert response["Reason"] == (
        f"Requested model package {requested} is Rejected in group {GROUP}, not an "
        f"Approved version of {GROUP}: not deployed."
    )


def test_the_api_calls_are_the_actions_the_policy_grants():
    """The handler calls list_model_packages and describe_model_package and nothing else."""
    source = lookup.__loader__.get_source(lookup.__name__)
    calls = {line.split("client.")[1].split("(")[0] for line in source.splitlines() if "client." in line}
    assert calls == {"list_model_packages", "describe_model_package"}
    mapping = boto3.client("sagemaker", region_name="us-east-1").meta.method_to_api_mapping
    assert {f"sagemaker:{mapping[c]}" for c in calls} == {LOOKUP_ACTION, DESCRIBE_ACTION}


def test_an_uncompressed_version_is_found_and_requested_like_a_tar_gz_one(sagemaker, response_url):
    """A version registered with modelDataCompression=none (ModelDataSource, an S3 prefix) after one with
    model.tar.gz: the lookup names versions, not their data, so both serve."""
    url, responses = response_url
    tar_gz = _register(sagemaker, "Approved")
    uncompressed = register(sagemaker, "Approved", PREFIX)
    lookup.handler(_event("Create", url), CONTEXT)
    event = _event("Update", url, PhysicalResourceId=uncompressed)
    event["ResourceProperties"]["Requested"] = tar_gz  # a rollback to the tar.gz version
    lookup.handler(event, CONTEXT)
    assert [r["Data"]["ModelPackageArn"] for _, r in responses] == [uncompressed, tar_gz]
