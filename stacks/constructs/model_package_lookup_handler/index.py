"""Lambda custom resource (inlined): the model package to serve, at deploy time.

The version the release function requested (the stack parameter ModelPackageArn), checked to be an Approved
version of the group; without one, the newest Approved version in the group.
"""

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


def requested_version(client, group, arn):
    """`arn` when it is an Approved version of `group`; NoApprovedVersion saying what it is otherwise."""
    package = client.describe_model_package(ModelPackageName=arn)
    if package.get("ModelPackageGroupName") != group or package.get("ModelApprovalStatus") != "Approved":
        raise NoApprovedVersion(
            f"Requested model package {arn} is {package.get('ModelApprovalStatus')} in group "
            f"{package.get('ModelPackageGroupName')}, not an Approved version of {group}: not deployed."
        )
    return arn


def handler(event, context):
    """CloudFormation request in, response PUT to the pre-signed ResponseURL; failures carry the reason."""
    status, reason, data = "SUCCESS", "", {}
    physical_id = event.get("PhysicalResourceId", "none")
    try:
        if event["RequestType"] != "Delete":  # nothing was created, so a delete has nothing to undo
            properties, client = event["ResourceProperties"], boto3.client("sagemaker")
            group, requested = properties["ModelPackageGroupName"], properties.get("Requested", "")
            physical_id = (
                requested_version(client, group, requested) if requested else newest_approved(client, group)
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
