"""Lays out `/opt/ml` trees exactly as SageMaker does before it starts a training or processing container.

Training (CreateTrainingJob), per host:
    input/config/hyperparameters.json   {name: string}; values JSON-encoded as the SDK's estimators send them
    input/config/inputdataconfig.json   {channel: {"TrainingInputMode", "S3DistributionType", ...}}
    input/config/resourceconfig.json    current_host, hosts (sorted as strings), instance type and groups
    input/data/<channel>/               the channel's files (File mode: copied before the container starts)
    model/  output/data/  checkpoints/  empty, for the container to fill
Processing (CreateProcessingJob):
    config/processingjobconfig.json     the job request as the container sees it
    config/resourceconfig.json          current_host, hosts
    processing/input/<name>/  processing/output/<name>/
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jax_llm.contract.paths import SageMakerPaths

# CreateTrainingJob limits on HyperParameters (the API rejects the request past them).
MAX_HYPERPARAMETERS = 100
MAX_HYPERPARAMETER_CHARS = 256
INSTANCE_GROUP = "homogeneousCluster"  # the group name SageMaker gives a job without heterogeneous clusters
NETWORK_INTERFACE = "eth0"
LOCAL_ROLE_ARN = "arn:aws:iam::000000000000:role/local-mode"  # no account: a well-formed placeholder
LOCAL_INSTANCE_TYPE = "local"  # what the SDK's own local mode writes for current_instance_type


class TreeError(ValueError):
    """A job request SageMaker itself would refuse (bad channel, hyperparameter, host count)."""


def host_names(count: int) -> list[str]:
    """`algo-1..N` sorted as strings, the order SageMaker lists them in (`algo-10` before `algo-2`)."""
    if count < 1:
        raise TreeError(f"hosts must be at least 1, got {count}")
    return sorted(f"algo-{i}" for i in range(1, count + 1))


def parse_cli_value(text: str) -> Any:
    """A `key=value` value typed as a user would type it into the SDK: `3` is an int, `tiny` a string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def encode_hyperparameters(hyperparameters: Mapping[str, Any]) -> dict[str, str]:
    """As the SDK's estimators send them: `json.dumps` of every value (`"tiny"` -> `"\\"tiny\\""`)."""
    if len(hyperparameters) > MAX_HYPERPARAMETERS:
        raise TreeError(
            f"{len(hyperparameters)} hyperparameters; SageMaker accepts at most {MAX_HYPERPARAMETERS}"
        )
    encoded = {}
    for key, value in hyperparameters.items():
        text = json.dumps(value)
        if len(key) > MAX_HYPERPARAMETER_CHARS or len(text) > MAX_HYPERPARAMETER_CHARS:
            raise TreeError(
                f"hyperparameter {key!r}: keys and values are at most {MAX_HYPERPARAMETER_CHARS} characters"
            )
        encoded[str(key)] = text
    return encoded


def _write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2) + "\n")


def _copy_channel(source: Path, target: Path) -> None:
    # File mode downloads the whole S3 prefix before the container starts; a copy keeps the user's data safe
    # from anything the job does to its input.
    shutil.copytree(source, target)


def _is_tree(root: Path) -> bool:
    paths = SageMakerPaths(root)
    return paths.input_config.is_dir() or paths.processing_config.is_dir() or paths.model.is_dir()


def fresh_root(root: Path) -> Path:
    """Creates `root` empty, replacing an earlier /opt/ml tree there (never other files)."""
    # Every SageMaker job starts on a clean volume; a leftover tree would leak one run's model into the next.
    # Only a directory that already is an /opt/ml tree is replaced: a mistyped root never deletes user files.
    root = Path(root).resolve()
    if root.exists() and any(root.iterdir()):
        if not _is_tree(root):
            raise TreeError(f"{root} is not empty and is not an /opt/ml tree; choose another root")
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    return root


def resource_config(current_host: str, hosts: Sequence[str], instance_type: str) -> dict[str, Any]:
    """resourceconfig.json for a homogeneous cluster, with the keys SageMaker writes."""
    return {
        "current_host": current_host,
        "current_instance_type": instance_type,
        "current_group_name": INSTANCE_GROUP,
        "hosts": list(hosts),
        "instance_groups": [
            {"instance_group_name": INSTANCE_GROUP, "instance_type": instance_type, "hosts": list(hosts)}
        ],
        "network_interface_name": NETWORK_INTERFACE,
    }


def lay_out_training_tree(
    root: Path,
    *,
    hyperparameters: Mapping[str, Any],
    channels: Mapping[str, Path],
    current_host: str = "algo-1",
    hosts: Sequence[str] = ("algo-1",),
    instance_type: str = LOCAL_INSTANCE_TYPE,
    input_mode: str = "File",
    checkpoints: Path | None = None,
) -> SageMakerPaths:
    """A fresh training tree at `root` for one host; `checkpoints` seeds checkpoints/ (S3 prefix copy)."""
    if current_host not in hosts:
        raise TreeError(f"current_host {current_host!r} is not one of the hosts {list(hosts)}")
    if list(hosts) != sorted(hosts):
        raise TreeError(f"hosts must be sorted as strings, as SageMaker lists them: {sorted(hosts)}")
    encoded = encode_hyperparameters(hyperparameters)
    for name, source in channels.items():
        if not Path(source).is_dir():
            raise TreeError(f"channel {name!r} ({source}): the data directory does not exist")
    paths = SageMakerPaths(fresh_root(root))
    _write_json(paths.hyperparameters, encoded)
    _write_json(
        paths.input_data_config,
        {
            name: {
                "TrainingInputMode": input_mode,
                "S3DistributionType": "FullyReplicated",
                "RecordWrapperType": "None",
            }
            for name in channels
        },
    )
    _write_json(paths.resource_config, resource_config(current_host, hosts, instance_type))
    for name, source in channels.items():
        _copy_channel(source, paths.channel(name))
    for directory in (paths.model, paths.output_data, paths.checkpoints):
        directory.mkdir(parents=True, exist_ok=True)
    if checkpoints is not None and Path(checkpoints).is_dir():
        shutil.copytree(checkpoints, paths.checkpoints, dirs_exist_ok=True)
    return paths


def lay_out_processing_tree(
    root: Path,
    *,
    job_name: str,
    inputs: Mapping[str, Path],
    outputs: Mapping[str, Path],
    arguments: Sequence[str],
    instance_type: str = LOCAL_INSTANCE_TYPE,
    container_root: str | None = None,
) -> SageMakerPaths:
    """A fresh processing tree: inputs copied to processing/input/<name>/, empty processing/output/<name>/.

    `inputs` and `outputs` map names to the local directories standing in for their S3 URIs.
    `container_root` is where the container sees the tree (`/opt/ml` under Docker, `root` for a host process);
    the job config's LocalPaths are written as the container sees them.
    """
    for name, source in inputs.items():
        if not Path(source).is_dir():
            raise TreeError(f"processing input {name!r} ({source}): the data directory does not exist")
    paths = SageMakerPaths(fresh_root(root))
    seen = Path(container_root or paths.root)

    def local(kind: str, name: str) -> str:
        return str(seen / "processing" / kind / name)

    job_config = {
        "ProcessingJobArn": f"arn:aws:sagemaker:local:000000000000:processing-job/{job_name}",
        "ProcessingJobName": job_name,
        "AppSpecification": {"ImageUri": "jax-llm:local", "ContainerArguments": list(arguments)},
        "Environment": {},
        "ProcessingInputs": [
            {
                "InputName": name,
                "AppManaged": False,
                "S3Input": {
                    "LocalPath": local("input", name),
                    "S3Uri": f"file://{Path(source).resolve()}",
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                    "S3DataDistributionType": "FullyReplicated",
                },
            }
            for name, source in inputs.items()
        ],
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": name,
                    "AppManaged": False,
                    "S3Output": {
                        "S3Uri": f"file://{Path(destination).resolve()}",
                        "LocalPath": local("output", name),
                        "S3UploadMode": "EndOfJob",
                    },
                }
                for name, destination in outputs.items()
            ]
        },
        "ProcessingResources": {
            "ClusterConfig": {"InstanceCount": 1, "InstanceType": instance_type, "VolumeSizeInGB": 30}
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": 86400},
        "RoleArn": LOCAL_ROLE_ARN,
    }
    _write_json(paths.processing_job_config, job_config)
    _write_json(paths.processing_resource_config, {"current_host": "algo-1", "hosts": ["algo-1"]})
    for name, source in inputs.items():
        _copy_channel(source, paths.processing / "input" / name)
    for name in outputs:
        (paths.processing / "output" / name).mkdir(parents=True)
    paths.output.mkdir(parents=True, exist_ok=True)
    return paths
