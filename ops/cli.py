"""The `python -m ops` command line: argument parsing, dispatch to the ops modules, and user-facing errors."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from ops import endpoint_invocation, experiment_runs, model_registry, pipeline_runs
from ops.aws import Aws
from ops.errors import OpsError, translate
from ops.stack_outputs import require_output, stack_outputs

# Output keys of the deployed stacks that the CLI reads (TrainingStack's and EndpointStack's CfnOutputs).
TRAINING_PIPELINE_OUTPUT = "TrainingPipelineName"
TUNING_PIPELINE_OUTPUT = "TuningPipelineName"
GROUP_OUTPUT = "ModelPackageGroupName"
ENDPOINT_OUTPUT = "EndpointName"
TRACKING_OUTPUT = "MlflowTrackingServerArn"


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
        "--training-stack", default="TrainingStack", help="CloudFormation name of TrainingStack"
    )
    parser.add_argument(
        "--endpoint-stack", default="EndpointStack", help="CloudFormation name of EndpointStack"
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

    runs = commands.add_parser("runs", help="recent training and tuning runs, final metrics (MLflow)")
    runs.add_argument("--tracking-uri", help="MLflow tracking server ARN or URL (default: TrainingStack's "
                      f"{TRACKING_OUTPUT}; without one, the Model Registry's versions are listed)")
    runs.add_argument("--experiment", action="append",
                      help="MLflow experiment (repeatable; default: both pipelines' names)")
    runs.add_argument("--limit", type=int, default=20, help="how many runs (default %(default)s)")
    runs.set_defaults(group=None, json=False)

    invoke = commands.add_parser("invoke", help="send a prompt to the endpoint (TGI schema)")
    invoke.add_argument("prompt")
    invoke.add_argument("--endpoint-name", help="endpoint (default: from EndpointStack's outputs)")
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
        print(f"Deploy it: cdk deploy EndpointStack -c modelPackageArn={arn}")


def _runs(args: argparse.Namespace, aws: Aws) -> None:
    """runs: the newest MLflow runs of both pipelines; the registry's versions when nothing tracks them."""
    outputs = {} if args.tracking_uri and args.experiment else stack_outputs(aws, args.training_stack)
    uri = args.tracking_uri or outputs.get(TRACKING_OUTPUT)
    if not uri:
        print(f"Stack {args.training_stack!r} tracks no runs in MLflow (trackingServer=none); "
              "its registered model versions:")
        _versions(args, aws)
        return
    experiments = args.experiment or [require_output(outputs, key, args.training_stack)
                                      for key in (TRAINING_PIPELINE_OUTPUT, TUNING_PIPELINE_OUTPUT)]
    runs = experiment_runs.list_runs(uri, experiments, args.limit, profile=args.profile)
    print("\n".join(experiment_runs.table(runs)) or f"No run in {', '.join(experiments)} yet.")


def _invoke(args: argparse.Namespace, aws: Aws) -> None:
    """invoke: one prompt, printed whole or token by token."""
    endpoint = args.endpoint_name or _output(aws, args.endpoint_stack, ENDPOINT_OUTPUT)
    endpoint_invocation.require_in_service(aws, endpoint)
    parameters = {
        "max_new_tokens": args.max_new_tokens,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "top_k": args.top_k,
        "seed": args.seed,
        "stop": args.stop,
    }
    body = endpoint_invocation.tgi_request(args.prompt, parameters, stream=args.stream)
    if not args.stream:
        for generation in endpoint_invocation.invoke(aws, endpoint, body):
            print(generation.get("generated_text", generation))
        return
    for event in endpoint_invocation.invoke_stream(aws, endpoint, body):
        token = event.get("token") or {}
        if not token.get("special"):
            print(token.get("text", ""), end="", flush=True)
    print()


_COMMANDS = {
    "train": _run,
    "tune": _run,
    "versions": _versions,
    "approve": _decide,
    "reject": _decide,
    "invoke": _invoke,
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
