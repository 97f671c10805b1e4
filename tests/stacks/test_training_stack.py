"""TrainingStack's resources and properties, read from the session's synthesized templates."""

from __future__ import annotations

import json

import pytest
from aws_cdk import Stack

from stacks.constructs.tracking_server import LOGGING_ACTIONS

STACK_ID = "TrainingStack"


@pytest.fixture(scope="module")
def stack(synthesized_app):
    """The TrainingStack construct (its public attributes are what other stacks use)."""
    return synthesized_app.stacks[STACK_ID]


@pytest.fixture(scope="module")
def template(synthesized_app):
    """TrainingStack's template as an assertions.Template."""
    return synthesized_app.templates[STACK_ID]


@pytest.fixture(scope="module")
def resources(synthesized_app):
    """TrainingStack's template resources, by logical id."""
    return synthesized_app.template_json[STACK_ID]["Resources"]


def resolve(stack: Stack, value):
    """``value`` (a token) as it appears in the template: expected values come from the constructs."""
    return stack.resolve(value)


def statements_by_sid(resources, role_ref) -> dict[str, dict]:
    """The statements of every policy attached to the role ``role_ref``, by Sid."""
    found = {}
    for resource in resources.values():
        props = resource["Properties"]
        is_policy = resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")
        if is_policy and role_ref in props.get("Roles", []):
            for statement in props["PolicyDocument"]["Statement"]:
                found[statement["Sid"]] = statement
    return found


def test_stack_exposes_what_dependent_stacks_use(stack):
    for name in (
        "settings",
        "key",
        "artifacts_bucket",
        "data_bucket",
        "repository",
        "image_uri",
        "image_tag",
        "execution_role",
        "execution_role_policy",
        "model_package_group_name",
        "image_deployment",
    ):
        assert getattr(stack, name) is not None, name
    assert stack.model_package_group_name == stack.settings.registry.model_package_group_name


def test_kms_key_rotates(template, stack):
    template.has_resource_properties(
        "AWS::KMS::Key",
        {
            "EnableKeyRotation": True,
            "PendingWindowInDays": stack.settings.storage.kms_pending_window_days,
        },
    )


def test_kms_key_lets_cloudwatch_logs_encrypt_only_this_accounts_log_groups(resources, stack):
    key = resources[stack.get_logical_id(stack.key.node.default_child)]
    statements = key["Properties"]["KeyPolicy"]["Statement"]
    (logs,) = [s for s in statements if s.get("Sid") == "CloudWatchLogsEncryptLogGroups"]
    assert logs["Principal"] == {
        "Service": {"Fn::Join": ["", ["logs.", {"Ref": "AWS::Region"}, ".amazonaws.com"]]}
    }
    assert logs["Condition"] == {
        "ArnLike": {
            "kms:EncryptionContext:aws:logs:arn": {
                "Fn::Join": [
                    "",
                    [
                        "arn:",
                        {"Ref": "AWS::Partition"},
                        ":logs:",
                        {"Ref": "AWS::Region"},
                        ":",
                        {"Ref": "AWS::AccountId"},
                        ":log-group:*",
                    ],
                ]
            }
        }
    }
    # The one wildcard action is the key policy's delegation to this account's IAM policies.
    wildcards = [s for s in statements if any("*" in a for a in _as_list(s["Action"]))]
    assert [(s["Action"], s["Principal"]) for s in wildcards] == [
        (
            "kms:*",
            {
                "AWS": {
                    "Fn::Join": [
                        "",
                        ["arn:", {"Ref": "AWS::Partition"}, ":iam::", {"Ref": "AWS::AccountId"}, ":root"],
                    ]
                }
            },
        )
    ]


def test_ecr_repository_scans_keeps_tags_immutable_and_expires_untagged_images(template, stack):
    template.has_resource_properties(
        "AWS::ECR::Repository",
        {
            "RepositoryName": stack.settings.project.name,
            "ImageScanningConfiguration": {"ScanOnPush": True},
            "ImageTagMutability": "IMMUTABLE",
            "EncryptionConfiguration": {"EncryptionType": "KMS", "KmsKey": resolve(stack, stack.key.key_arn)},
        },
    )
    repo = template.find_resources("AWS::ECR::Repository")
    (props,) = [r["Properties"] for r in repo.values()]
    (rule,) = json.loads(props["LifecyclePolicy"]["LifecyclePolicyText"])["rules"]
    assert rule["selection"] == {
        "tagStatus": "untagged",
        "countType": "sinceImagePushed",
        "countUnit": "days",
        "countNumber": stack.settings.image.untagged_image_days,
    }
    assert rule["action"] == {"type": "expire"}


def test_image_asset_is_linux_amd64_built_from_the_container_dir(synthesized_app, stack):
    assets = json.loads((synthesized_app.outdir / f"{STACK_ID}.assets.json").read_text())["dockerImages"]
    image = assets[stack.image_tag]
    assert image["source"]["platform"] == "linux/amd64"
    assert "dockerBuildArgs" not in image["source"]  # the default build is the GPU image
    staged = synthesized_app.outdir / image["source"]["directory"]
    files = {p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file()}
    assert {"Dockerfile", "requirements.lock", "requirements-cuda.lock", "jax_llm/__main__.py"} <= files
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]


def test_image_is_copied_into_the_repository_under_its_content_tag(resources, stack):
    assert len(stack.image_tag) == 64 and int(stack.image_tag, 16) >= 0  # sha256 of the build context
    image_uri = resolve(stack, stack.image_uri)
    assert image_uri == resolve(stack, stack.repository.repository_uri_for_tag(stack.image_tag))
    (copy,) = [r["Properties"] for r in resources.values() if r["Type"] == "Custom::CDKECRDeployment"]
    assert copy["DestImage"] == {"Fn::Join": ["", ["docker://", *image_uri["Fn::Join"][1]]]}
    assert image_uri["Fn::Join"][1][-1] == f":{stack.image_tag}"
    (source,) = copy["SrcImage"]["Fn::Join"][1][1].values()
    assert "/cdk-hnb659fds-container-assets-" in source and source.endswith(f":{stack.image_tag}")


def test_image_copy_handler_may_only_pull_the_asset_and_push_to_this_repository(resources, stack):
    (handler,) = [
        r
        for r in resources.values()
        if r["Type"] == "AWS::Lambda::Function" and r["Properties"]["Handler"] == "bootstrap"
    ]
    role_ref = {"Ref": handler["Properties"]["Role"]["Fn::GetAtt"][0]}
    assert "ManagedPolicyArns" not in resources[role_ref["Ref"]]["Properties"]
    statements = statements_by_sid(resources, role_ref)
    assert set(statements) == {
        "EcrAuthorizationToken",
        "PullImageAsset",
        "PushToProjectRepository",
        "HandlerLogs",
    }
    assert statements["EcrAuthorizationToken"]["Action"] == "ecr:GetAuthorizationToken"
    assert statements["PushToProjectRepository"]["Resource"] == resolve(
        stack, stack.repository.repository_arn
    )
    assert "ecr:PutImage" not in statements["PullImageAsset"]["Action"]
    assert "cdk-hnb659fds-container-assets-" in json.dumps(statements["PullImageAsset"]["Resource"])
    log_group = statements["HandlerLogs"]["Resource"]["Fn::GetAtt"][0]
    assert resources[log_group]["Properties"]["KmsKeyId"] == resolve(stack, stack.key.key_arn)
    assert resources[log_group]["Properties"]["RetentionInDays"] == stack.settings.storage.log_retention_days


def test_buckets_are_private_tls_only_versioned_and_encrypted(template, stack):
    buckets = template.find_resources("AWS::S3::Bucket")
    assert len(buckets) == 3  # artifacts, data, access logs
    for props in (b["Properties"] for b in buckets.values()):
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}
        assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    key_arn = resolve(stack, stack.key.key_arn)
    for bucket in (stack.artifacts_bucket, stack.data_bucket):
        props = buckets[stack.get_logical_id(bucket.node.default_child)]["Properties"]
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"] == [
            {
                "BucketKeyEnabled": True,
                "ServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn},
            }
        ]
        assert props["LoggingConfiguration"]["DestinationBucketName"] == resolve(
            stack, stack.access_logs_bucket.bucket_name
        )
    logs = buckets[stack.get_logical_id(stack.access_logs_bucket.node.default_child)]["Properties"]
    # S3 server access logging delivers only to SSE-S3 buckets.
    assert logs["BucketEncryption"]["ServerSideEncryptionConfiguration"] == [
        {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
    ]
    retention = stack.settings.storage.access_log_retention_days
    assert logs["LifecycleConfiguration"]["Rules"][0]["ExpirationInDays"] == retention


def test_every_bucket_policy_denies_plain_http_and_old_tls(template):
    policies = template.find_resources("AWS::S3::BucketPolicy")
    assert len(policies) == 3
    for policy in policies.values():
        denies = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
        conditions = [s["Condition"] for s in denies]
        assert {"Bool": {"aws:SecureTransport": "false"}} in conditions
        assert {"NumericLessThan": {"s3:TlsVersion": 1.2}} in conditions
        assert all(s["Principal"] == {"AWS": "*"} and s["Action"] == "s3:*" for s in denies)


def test_execution_role_trusts_sagemaker_in_this_account_only(resources, stack):
    role = resources[stack.get_logical_id(stack.execution_role.node.default_child)]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"] == [
        {
            "Action": "sts:AssumeRole",
            "Effect": "Allow",
            "Principal": {"Service": "sagemaker.amazonaws.com"},
            "Condition": {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}},
        }
    ]
    assert "ManagedPolicyArns" not in role and "Policies" not in role


def test_execution_role_statements_are_exactly_these(resources, stack):
    role_ref = resolve(stack, stack.execution_role.role_name)
    repo = resolve(stack, stack.repository.repository_arn)
    key = resolve(stack, stack.key.key_arn)
    artifacts, data = (resolve(stack, b.bucket_arn) for b in (stack.artifacts_bucket, stack.data_bucket))
    logs = "arn:{Partition}:logs:{Region}:{AccountId}:log-group:/aws/sagemaker/*"
    tuning_jobs = resolve(
        stack, stack.format_arn(service="sagemaker", resource="hyper-parameter-tuning-job", resource_name="*")
    )
    expected = {
        "EcrAuthorizationToken": ("ecr:GetAuthorizationToken", "*"),
        "EcrPullProjectImage": (
            ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            repo,
        ),
        "S3ListBuckets": (["s3:GetBucketLocation", "s3:ListBucket"], [artifacts, data]),
        "S3ReadWriteObjects": (
            ["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"],
            {"Fn::Join": ["", [artifacts, "/*"]]},
        ),
        "S3ReadObjects": ("s3:GetObject", {"Fn::Join": ["", [data, "/*"]]}),
        "KmsUseProjectKey": (["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"], key),
        "KmsGrantForSageMakerVolumes": ("kms:CreateGrant", key),
        "CloudWatchLogs": (
            ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"],
            [logs, logs + ":log-stream:*"],
        ),
        "CloudWatchMetrics": ("cloudwatch:PutMetricData", "*"),
        # Logging runs to the stack's MLflow tracking server (the Track steps), and finding a tuner's trials.
        "MlflowLogRuns": (LOGGING_ACTIONS, resolve(stack, stack.tracking_arn)),
        "ListTuningTrials": ("sagemaker:ListTrainingJobsForHyperParameterTuningJob", tuning_jobs),
    }
    statements = statements_by_sid(resources, role_ref)
    assert set(statements) == set(expected)
    for sid, (actions, resource) in expected.items():
        statement = statements[sid]
        assert statement["Effect"] == "Allow" and statement["Action"] == actions, sid
        rendered = _render_arn(statement["Resource"]) if sid == "CloudWatchLogs" else statement["Resource"]
        assert rendered == resource, sid
    assert statements["KmsGrantForSageMakerVolumes"]["Condition"] == {
        "Bool": {"kms:GrantIsForAWSResource": "true"}
    }
    assert statements["CloudWatchMetrics"]["Condition"] == {
        "StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}
    }


def test_execution_policy_is_what_dependents_wait_for(resources, stack):
    policy = resources[stack.get_logical_id(stack.execution_role_policy.node.default_child)]
    assert policy["Type"] == "AWS::IAM::ManagedPolicy"
    assert policy["Properties"]["Roles"] == [resolve(stack, stack.execution_role.role_name)]


def test_no_role_has_a_wildcard_action_or_an_unconditioned_star_resource_but_the_ecr_token(resources):
    for logical_id, resource in resources.items():
        if resource["Type"] not in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            continue
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
            actions = _as_list(statement["Action"])
            assert not [a for a in actions if "*" in a], (logical_id, statement)
            if "*" in _as_list(statement["Resource"]):
                # Neither API has resource-level permissions; PutMetricData is scoped by namespace instead.
                assert actions == ["ecr:GetAuthorizationToken"] or (
                    actions == ["cloudwatch:PutMetricData"]
                    and "cloudwatch:namespace" in json.dumps(statement.get("Condition"))
                ), (logical_id, statement)


def test_no_role_uses_an_aws_managed_full_access_policy(resources):
    attached = [
        json.dumps(r["Properties"].get("ManagedPolicyArns", []))
        for r in resources.values()
        if r["Type"] == "AWS::IAM::Role"
    ]
    assert not [a for a in attached if "FullAccess" in a]


def test_model_package_group(template, stack):
    template.has_resource_properties(
        "AWS::SageMaker::ModelPackageGroup",
        {
            "ModelPackageGroupName": stack.settings.registry.model_package_group_name,
        },
    )


def test_outputs_name_image_role_buckets_key_and_group(template, stack):
    outputs = template.to_json()["Outputs"]
    expected = {
        "ImageUri": stack.image_uri,
        "ExecutionRoleArn": stack.execution_role.role_arn,
        "ArtifactsBucketName": stack.artifacts_bucket.bucket_name,
        "DataBucketName": stack.data_bucket.bucket_name,
        "KmsKeyArn": stack.key.key_arn,
        "ModelPackageGroupName": stack.model_package_group_name,
    }
    for output_id, value in expected.items():
        assert outputs[output_id]["Value"] == resolve(stack, value), output_id


def test_existing_data_bucket_and_cpu_image(synth_app):
    """One more synth: a data bucket named in context is used, not created; the CPU image gets its own tag."""
    app = synth_app({"dataBucketName": "research-team-corpus", "imageCpuOnly": "true"})
    assert app.nag_findings == []
    stack, resources = app.stacks[STACK_ID], app.template_json[STACK_ID]["Resources"]
    assert len([r for r in resources.values() if r["Type"] == "AWS::S3::Bucket"]) == 2
    data_arn = {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":s3:::research-team-corpus"]]}
    statements = statements_by_sid(resources, resolve(stack, stack.execution_role.role_name))
    assert data_arn in statements["S3ListBuckets"]["Resource"]
    assert statements["S3ReadObjects"]["Resource"] == {
        "Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":s3:::research-team-corpus/*"]]
    }
    assets = json.loads((app.outdir / f"{STACK_ID}.assets.json").read_text())["dockerImages"]
    assert assets[stack.image_tag]["source"]["dockerBuildArgs"] == {"VARIANT": "cpu"}
    assert app.template_json[STACK_ID]["Outputs"]["DataBucketName"]["Value"] == "research-team-corpus"


def _as_list(value) -> list:
    """A policy field that may be a single value or a list, as a list."""
    return value if isinstance(value, list) else [value]


def _render_arn(value):
    """ARNs joined from pseudo parameters, as readable strings (lists element-wise)."""
    if isinstance(value, list):
        return [_render_arn(v) for v in value]
    parts = value["Fn::Join"][1]
    return "".join(p if isinstance(p, str) else "{" + p["Ref"].removeprefix("AWS::") + "}" for p in parts)
