"""Lambda custom resource (inlined): the newest Approved model package in a group, at deploy time."""

import json
import urllib.request

import boto3

HOW_TO_APPROVE = (
    "Approve a version: `python -m ops versions` then `python -m ops approve <version>` (or `aws sagemaker "
    "update-model-package --model-package-arn <arn> --model-approval-status Approved`), or deploy a given "
    "one with `cdk deploy EndpointStack -c modelPackageArn=<arn>`."
)


class NoApprovedVersion(Exception):
    """The group has no Approved version; the message says how to approve one."""


def newest_approved(client, group):
    """ARN of the newest Approved version in `group`; NoApprovedVersion if there is none."""
    summaries = client.list_model_packages(
        ModelPackageGroupName=group,
        ModelApprovalStatus="Approved",
        SortBy="CreationTime",
        SortOrder="Descending",
        MaxResults=1,
    )["ModelPackageSummaryList"]
    if not summaries:
        raise NoApprovedVersion(
            f"Model package group {group} has no Approved version to deploy. {HOW_TO_APPROVE}"
        )
    return summaries[0]["ModelPackageArn"]


def handler(event, context):
    """CloudFormation request in, response PUT to the pre-signed ResponseURL; failures carry the reason."""
    status, reason, data = "SUCCESS", "", {}
    physical_id = event.get("PhysicalResourceId", "none")
    try:
        if event["RequestType"] != "Delete":  # nothing was created, so a delete has nothing to undo
            physical_id = newest_approved(
                boto3.client("sagemaker"), event["ResourceProperties"]["ModelPackageGroupName"]
            )
            data = {"ModelPackageArn": physical_id}
    except NoApprovedVersion as exc:
        status, reason = "FAILED", str(exc)
    except Exception as exc:  # report any other failure to CloudFormation instead of letting it hang
        status, reason = "FAILED", f"{type(exc).__name__}: {exc} (log stream {context.log_stream_name})"
    body = json.dumps(
        {
            "Status": status,
            "Reason": reason[:3000],
            "PhysicalResourceId": physical_id,
            "StackId": event["StackId"],
            "RequestId": event["RequestId"],
            "LogicalResourceId": event["LogicalResourceId"],
            "Data": data,
        }
    ).encode()
    request = urllib.request.Request(
        event["ResponseURL"], data=body, method="PUT", headers={"Content-Type": ""}
    )
    urllib.request.urlopen(request, timeout=30).close()
