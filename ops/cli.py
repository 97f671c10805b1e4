"""The `python -m ops` command line: argument parsing, dispatch to the ops modules, and user-facing errors."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from ops import (
    batch_generation,
    endpoint_invocation,
    experiment_runs,
    images,
    model_registry,
    pipeline_runs,
    release,
)
from ops.aws import Aws
from ops.errors import OpsError, translate
from ops.stack_outputs import require_output, stack_outputs
from stacks.names import (
    COMPONENT_OUTPUT,
    ENDPOINT_OUTPUT,
    ENDPOINT_STACK,
    EXECUTION_ROLE_OUTPUT,
    GROUP_OUTPUT,
    IMAGE_OUTPUT,
    KMS_KEY_OUTPUT,
    TRACKING_OUTPUT,
    TRAINING_PIPELINE_OUTPUT,
    TRAINING_STACK,
    TUNING_PIPELINE_OUTPUT,
)


def _parser() -> argparse.ArgumentParser:
    """The argument parser: global AWS options and one subcommand per task."""
    parser = argparse.ArgumentParser(
        prog="python -m ops",
        description="Operate the deployed stacks: pipeline runs, model versions, endpoint invocations.",
    )
    parser.add_argument("--profile", help="AWS profile (default: the SDK's credential chain)")
    # boto3 reads AWS_DEFAULT_REGION but not AWS_REGION (which the CDK CLI and other SDKs use): take both.
    parser.add_argument(
        "--region",
        default=os.environ.get("AWS_REGION"),
        help="AWS region (default: AWS_REGION, AWS_DEFAULT_REGION or the profile's region)",
    )
    parser.add_argument("--endpoint-url", help="AWS endpoint URL override, for emulators such as moto")
    parser.add_argument(
        "--training-stack", default=TRAINING_STACK, help="CloudFormation name of TrainingStack"
    )
    parser.add_argument(
        "--endpoint-stack", default=ENDPOINT_STACK, help="CloudFormation name of EndpointStack"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    for name, what in (("train", "the training pipeline"), ("tune", "the tuning pipeline")):
        run = commands.add_parser(name, help=f"start a run of {what} with other parameters")
        run.add_argument(
            "-p",
            "--parameter",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="pipeline parameter, e.g. learning_rate=3e-4 or TrainingInstanceType=ml.g5.12xlarge",
        )
        run.add_argument("--pipeline-name", help="pipeline to run (default: from TrainingStack's outputs)")
        run.add_argument("--display-name", help="execution display name")

    versions = commands.add_parser("versions", help="list model package versions with their metrics")
    versions.add_argument("--group", help="model package group (default: from TrainingStack's outputs)")
    versions.add_argument("--json", action="store_true", help="print JSON instead of a table")

    for name, status in (("approve", "Approved"), ("reject", "Rejected")):
        decide = commands.add_parser(name, help=f"set a model package version to {status}")
        decide.add_argument("version", help="version number in the group, or a model package ARN")
        decide.add_argument("--group", help="model package group (default: from TrainingStack's outputs)")
        decide.add_argument("--description", help="why (stored as the ApprovalDescription)")
        decide.set_defaults(status=status)

    status = (
        commands.add_parser("release", help="the release path of EndpointStack")
        .add_subparsers(dest="release_command", required=True)
        .add_parser("status", help="which version serves, which is rolling out, and the last rollouts")
    )
    status.add_argument("--last", type=int, default=5, help="how many rollouts to show (default 5)")
    rollback = commands.add_parser(
        "rollback", help="reject the serving version and roll the previous Approved one back out"
    )
    rollback.add_argument(
        "--reason",
        default="rolled back with python -m ops rollback",
        help="why (stored in the rejected version's ApprovalDescription)",
    )
    rollback.add_argument("--group", help="model package group (default: from TrainingStack's outputs)")

    prune = (
        commands.add_parser("images", help="the image repository")
        .add_subparsers(dest="images_command", required=True)
        .add_parser(
            "prune", help="delete the images no model version and no pipeline uses (says which first)"
        )
    )
    prune.add_argument("--yes", action="store_true", help="delete them (without it: only say which)")
    prune.add_argument("--group", help="model package group (default: from TrainingStack's outputs)")

    runs = commands.add_parser("runs", help="recent training and tuning runs, final metrics (MLflow)")
    runs.add_argument(
        "--tracking-uri",
        help="MLflow tracking server ARN or URL (default: TrainingStack's "
        f"{TRACKING_OUTPUT}; without one, the Model Registry's versions are listed)",
    )
    runs.add_argument(
        "--experiment", action="append", help="MLflow experiment (repeatable; default: both pipelines' names)"
    )
    runs.add_argument("--limit", type=int, default=20, help="how many runs (default %(default)s)")
    runs.set_defaults(group=None, json=False)

    generate = commands.add_parser(
        "generate",
        help="answer a JSON Lines file of TGI requests with a model version (a batch transform job)",
    )
    generate.add_argument("--model-package", required=True, help="version number in the group, or its ARN")
    generate.add_argument("--input", required=True, help="s3://.../prompts.jsonl: one TGI request per line")
    generate.add_argument("--output", required=True, help="s3://... prefix: answers in <prefix>/<file>.out")
    generate.add_argument("--instance-type", help="default: the first instance type the version supports")
    generate.add_argument("--instance-count", type=int, default=1)
    generate.add_argument(
        "--max-concurrent",
        type=int,
        help="requests per instance at once (default: what the container advertises)",
    )
    generate.add_argument(
        "--wait",
        action="store_true",
        help="wait for the job to end and say where the "
        "answers are (without it: print the job's name and return)",
    )
    generate.add_argument("--group", help="model package group (default: from TrainingStack's outputs)")

    invoke = commands.add_parser("invoke", help="send a prompt to the endpoint (TGI's or OpenAI's schema)")
    invoke.add_argument("prompt")
    invoke.add_argument(
        "--schema",
        choices=endpoint_invocation.SCHEMAS,
        default="tgi",
        help="the request's schema: TGI's, OpenAI's completions, or OpenAI's chat (default: tgi)",
    )
    invoke.add_argument("--system", help="chat: a system message before the prompt")
    invoke.add_argument("--endpoint-name", help="endpoint (default: from EndpointStack's outputs)")
    invoke.add_argument(
        "--inference-component",
        help="the endpoint's inference component to invoke (default: EndpointStack's, "
        "when it serves in inference-components mode)",
    )
    invoke.add_argument("--stream", action="store_true", help="print tokens as they are generated")
    invoke.add_argument("--max-new-tokens", type=int, default=64)
    invoke.add_argument("--temperature", type=float)
    invoke.add_argument("--top-p", type=float)
    invoke.add_argument("--top-k", type=int)
    invoke.add_argument("--seed", type=int)
    invoke.add_argument("--stop", action="append", help="stop sequence (repeatable)")
    return parser


def _output(aws: Aws, stack: str, key: str) -> str:
    """One output of a deployed stack."""
    return require_output(stack_outputs(aws, stack), key, stack)


def _run(args: argparse.Namespace, aws: Aws) -> None:
    """train / tune: start a pipeline execution."""
    output = TRAINING_PIPELINE_OUTPUT if args.command == "train" else TUNING_PIPELINE_OUTPUT
    pipeline = args.pipeline_name or _output(aws, args.training_stack, output)
    overrides = pipeline_runs.parse_assignments(args.parameter)
    arn = pipeline_runs.start_run(aws, pipeline, overrides, args.display_name)
    print(f"Started {pipeline}: {arn}")


def _versions(args: argparse.Namespace, aws: Aws) -> None:
    """versions: a table (or JSON) of the group's versions, newest first."""
    group = args.group or _output(aws, args.training_stack, GROUP_OUTPUT)
    versions = model_registry.list_versions(aws, group)
    if args.json:
        print(json.dumps([{**vars(v), "created": v.created.isoformat()} for v in versions], indent=2))
        return
    if not versions:
        print(f"No model package in group {group!r} yet: run `python -m ops train`.")
        return
    for v in versions:
        metrics = " ".join(f"{k}={v.metrics[k]}" for k in sorted(v.metrics)) or "-"
        print(f"{v.version:>4}  {v.approval_status:<22} {v.created:%Y-%m-%d %H:%M}  {metrics}")


def _decide(args: argparse.Namespace, aws: Aws) -> None:
    """approve / reject: change one version's approval status."""
    group = args.group or _output(aws, args.training_stack, GROUP_OUTPUT)
    arn = model_registry.resolve_version(aws, group, args.version)
    package = model_registry.set_approval(aws, arn, args.status, args.description)
    print(f"{arn} is now {package['ModelApprovalStatus']}")
    if args.status == "Approved":
        print(
            "EndpointStack rolls the newest Approved version out by itself; follow it with "
            "`python -m ops release status` (or pin this one: "
            f"cdk deploy EndpointStack -c modelPackageArn={arn})"
        )


def _release(args: argparse.Namespace, aws: Aws) -> None:
    """release status: what EndpointStack serves and rolls out, and its last rollouts."""
    print("\n".join(release.describe(release.release_status(aws, args.endpoint_stack, args.last))))


def _rollback(args: argparse.Namespace, aws: Aws) -> None:
    """rollback: the serving version Rejected, the previous Approved one rolled out by the release path."""
    group = args.group or _output(aws, args.training_stack, GROUP_OUTPUT)
    previous, outcome = release.rollback(aws, args.endpoint_stack, group, args.reason)
    print(
        f"Rolling back to version {previous.version} ({previous.arn}): {outcome.get('outcome')}, "
        f"{outcome.get('detail', '')}. Follow it with `python -m ops release status`."
    )


def _prune(args: argparse.Namespace, aws: Aws) -> None:
    """images prune: say which unreferenced images go, and with --yes delete them."""
    outputs = stack_outputs(aws, args.training_stack)
    group = args.group or require_output(outputs, GROUP_OUTPUT, args.training_stack)
    current = require_output(outputs, IMAGE_OUTPUT, args.training_stack)
    repository, used = images.references(aws, group, current)
    every = images.repository_images(aws, repository)
    unused = images.unreferenced(every, used)
    print(
        f"{repository}: {len(every)} images, {len(every) - len(unused)} used by a model version or the "
        f"pipelines, {len(unused)} unused."
    )
    for image in unused:
        print(
            f"  {'deleting' if args.yes else 'would delete'} {image.digest} "
            f"{','.join(image.tags) or '(untagged)'} pushed {image.pushed_at:%Y-%m-%d}"
        )
    if not args.yes:
        if unused:
            print("Nothing deleted: run again with --yes to delete these.")
        return
    failures = images.delete(aws, repository, unused)
    if failures:
        raise OpsError("Some images were not deleted: " + "; ".join(failures))
    print(f"Deleted {len(unused)} images.")


def _runs(args: argparse.Namespace, aws: Aws) -> None:
    """runs: the newest MLflow runs of both pipelines; the registry's versions when nothing tracks them."""
    outputs = {} if args.tracking_uri and args.experiment else stack_outputs(aws, args.training_stack)
    uri = args.tracking_uri or outputs.get(TRACKING_OUTPUT)
    if not uri:
        print(
            f"Stack {args.training_stack!r} tracks no runs in MLflow (trackingServer=none); "
            "its registered model versions:"
        )
        _versions(args, aws)
        return
    experiments = args.experiment or [
        require_output(outputs, key, args.training_stack)
        for key in (TRAINING_PIPELINE_OUTPUT, TUNING_PIPELINE_OUTPUT)
    ]
    runs = experiment_runs.list_runs(uri, experiments, args.limit, profile=args.profile)
    print("\n".join(experiment_runs.table(runs)) or f"No run in {', '.join(experiments)} yet.")


def _invoke(args: argparse.Namespace, aws: Aws) -> None:
    """invoke: one prompt, printed whole or token by token."""
    if args.system and args.schema != "chat":
        raise OpsError("--system needs --schema chat")
    if args.endpoint_name:
        endpoint, component = args.endpoint_name, args.inference_component
    else:  # an EndpointStack of inference components names its component in an output too
        outputs = stack_outputs(aws, args.endpoint_stack)
        endpoint = require_output(outputs, ENDPOINT_OUTPUT, args.endpoint_stack)
        component = args.inference_component or outputs.get(COMPONENT_OUTPUT)
    endpoint_invocation.require_in_service(aws, endpoint)
    parameters = {
        "max_new_tokens": args.max_new_tokens,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "top_k": args.top_k,
        "seed": args.seed,
        "stop": args.stop,
    }
    body = endpoint_invocation.request_body(args.schema, args.prompt, parameters, args.stream, args.system)
    if not args.stream:
        answer = endpoint_invocation.invoke(aws, endpoint, body, component)
        for text in endpoint_invocation.answer_texts(args.schema, answer):
            print(text)
        return
    for event in endpoint_invocation.invoke_stream(aws, endpoint, body, component):
        print(endpoint_invocation.event_text(args.schema, event), end="", flush=True)
    print()


def _generate(args: argparse.Namespace, aws: Aws) -> None:
    """generate: a transform job over a JSON Lines file, on a registered version."""
    outputs = stack_outputs(aws, args.training_stack)
    if args.model_package.startswith("arn:"):
        arn = args.model_package
    else:
        group = args.group or require_output(outputs, GROUP_OUTPUT, args.training_stack)
        arn = model_registry.resolve_version(aws, group, args.model_package)
    instance_type = args.instance_type or model_registry.default_instance_type(aws, arn)
    job = batch_generation.GenerationJob(
        model_package_arn=arn,
        input_uri=args.input,
        output_uri=args.output,
        instance_type=instance_type,
        instance_count=args.instance_count,
        max_concurrent=args.max_concurrent,
    )
    role_arn = require_output(outputs, EXECUTION_ROLE_OUTPUT, args.training_stack)
    name = batch_generation.start(aws, job, role_arn=role_arn, kms_key_arn=outputs.get(KMS_KEY_OUTPUT))
    print(f"Started transform job {name} ({instance_type} x {args.instance_count}) on {arn}")
    if not args.wait:
        print(
            f"Follow it with `aws sagemaker describe-transform-job --transform-job-name {name}`; answers "
            f"go to {batch_generation.output_location(job)}"
        )
        return
    batch_generation.wait(aws, name, progress=lambda status: print(f"  {status}", flush=True))
    print(f"Answers: {batch_generation.output_location(job)}")


_COMMANDS = {
    "train": _run,
    "tune": _run,
    "versions": _versions,
    "approve": _decide,
    "reject": _decide,
    "invoke": _invoke,
    "generate": _generate,
    "release": _release,
    "rollback": _rollback,
    "images": _prune,
    "runs": _runs,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command; returns the exit code (errors print one clear line to stderr)."""
    args = _parser().parse_args(argv)
    aws = Aws(profile=args.profile, region=args.region, endpoint_url=args.endpoint_url)
    try:
        _COMMANDS[args.command](args, aws)
    except OpsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:
        translated = translate(exc)
        if translated is None:
            raise
        print(f"error: {translated}", file=sys.stderr)
        return translated.exit_code
    return 0
