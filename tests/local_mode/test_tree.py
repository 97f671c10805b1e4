"""The local /opt/ml trees read back by SageMaker's own parsers: the training toolkit and botocore."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import botocore.session
import pytest
from botocore.validate import ParamValidator

from local_mode.tree import (
    TreeError,
    encode_hyperparameters,
    host_names,
    lay_out_processing_tree,
    lay_out_training_tree,
    parse_cli_value,
)

# Runs in a child process: sagemaker_training.environment reads SAGEMAKER_BASE_DIR once, at import.
TOOLKIT_PROBE = """
import json
from sagemaker_training import environment
env = environment.Environment()
print(json.dumps({
    "hyperparameters": env.hyperparameters,
    "channel_input_dirs": env.channel_input_dirs,
    "input_data_config": env.input_data_config,
    "hosts": env.hosts,
    "current_host": env.current_host,
    "master_hostname": env.master_hostname,
    "is_master": env.is_master,
    "current_instance_type": env.current_instance_type,
    "current_instance_group": env.current_instance_group,
    "current_instance_group_hosts": env.current_instance_group_hosts,
    "network_interface_name": env.network_interface_name,
    "model_dir": env.model_dir,
    "output_data_dir": env.output_data_dir,
    "sm_hps": env.to_env_vars()["SM_HPS"],
}))
"""


def toolkit_view(root: Path) -> dict:
    """What the SageMaker training toolkit sees in the tree at `root`."""
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(root), "AWS_DEFAULT_REGION": "us-east-1"}
    done = subprocess.run(
        [sys.executable, "-c", TOOLKIT_PROBE], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def data(tmp_path: Path) -> dict[str, Path]:
    channels = {}
    for name in ("train", "validation", "tokenizer"):
        channels[name] = tmp_path / "data" / name
        (channels[name] / "nested").mkdir(parents=True)
        (channels[name] / "nested" / f"{name}.bin").write_bytes(name.encode() * 10)
    return channels


HYPERPARAMETERS = {
    "preset": "tiny",
    "max_steps": 20,
    "learning_rate": 3e-4,
    "fsdp": True,
    "compute_dtype": "float32",
}


def test_training_tree_reads_back_through_the_training_toolkit(tmp_path: Path, data: dict[str, Path]) -> None:
    hosts = host_names(3)
    root = tmp_path / "algo-2"
    lay_out_training_tree(
        root,
        hyperparameters=HYPERPARAMETERS,
        channels=data,
        current_host="algo-2",
        hosts=hosts,
        instance_type="ml.p4d.24xlarge",
    )
    seen = toolkit_view(root)

    assert seen["hyperparameters"] == HYPERPARAMETERS  # types survive the SDK's string encoding
    assert json.loads(seen["sm_hps"]) == HYPERPARAMETERS
    assert seen["channel_input_dirs"] == {name: str(root / "input" / "data" / name) for name in data}
    assert {c: v["TrainingInputMode"] for c, v in seen["input_data_config"].items()} == dict.fromkeys(
        data, "File"
    )
    assert seen["hosts"] == ["algo-1", "algo-2", "algo-3"]
    assert seen["current_host"] == "algo-2"
    assert seen["master_hostname"] == "algo-1" and seen["is_master"] is False
    assert seen["current_instance_type"] == "ml.p4d.24xlarge"
    assert seen["current_instance_group"] == "homogeneousCluster"
    assert seen["current_instance_group_hosts"] == hosts
    assert seen["network_interface_name"] == "eth0"
    assert seen["model_dir"] == str(root / "model")
    assert seen["output_data_dir"] == str(root / "output" / "data")
    for name, source in data.items():  # channel files copied byte for byte, as File mode downloads them
        assert (root / "input" / "data" / name / "nested" / f"{name}.bin").read_bytes() == (
            source / "nested" / f"{name}.bin"
        ).read_bytes()
    assert (root / "checkpoints").is_dir() and not any((root / "model").iterdir())


def test_hyperparameters_are_strings_json_encoded_as_the_sdk_sends_them(
    tmp_path: Path, data: dict[str, Path]
) -> None:
    lay_out_training_tree(tmp_path / "t", hyperparameters=HYPERPARAMETERS, channels={"train": data["train"]})
    stored = json.loads((tmp_path / "t" / "input" / "config" / "hyperparameters.json").read_text())
    assert stored == {
        "preset": '"tiny"',
        "max_steps": "20",
        "learning_rate": "0.0003",
        "fsdp": "true",
        "compute_dtype": '"float32"',
    }
    assert all(isinstance(v, str) for v in stored.values())


def test_cli_values_are_typed_as_a_user_types_them_into_the_sdk() -> None:
    assert [parse_cli_value(v) for v in ("3", "3e-4", "true", "tiny", '"7"')] == [3, 3e-4, True, "tiny", "7"]


def test_hosts_are_sorted_as_strings_like_sagemaker() -> None:
    assert host_names(11)[:4] == ["algo-1", "algo-10", "algo-11", "algo-2"]
    with pytest.raises(TreeError, match="at least 1"):
        host_names(0)


def test_requests_sagemaker_refuses_are_refused(tmp_path: Path, data: dict[str, Path]) -> None:
    with pytest.raises(TreeError, match=r"channel 'train' \(.*missing\): the data directory does not exist"):
        lay_out_training_tree(tmp_path / "t", hyperparameters={}, channels={"train": tmp_path / "missing"})
    with pytest.raises(TreeError, match="'x'.*256"):
        encode_hyperparameters({"x": "a" * 300})
    with pytest.raises(TreeError, match="at most 100"):
        encode_hyperparameters({f"k{i}": i for i in range(101)})
    with pytest.raises(TreeError, match="current_host 'algo-3'"):
        lay_out_training_tree(
            tmp_path / "t", hyperparameters={}, channels={}, current_host="algo-3", hosts=host_names(2)
        )


def test_a_new_tree_replaces_an_old_tree_but_never_other_files(tmp_path: Path, data: dict[str, Path]) -> None:
    root = tmp_path / "t"
    lay_out_training_tree(root, hyperparameters={}, channels={"train": data["train"]})
    (root / "model" / "stale.bin").write_bytes(b"old run")
    lay_out_training_tree(root, hyperparameters={}, channels={"train": data["train"]})
    assert not (root / "model" / "stale.bin").exists()

    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(TreeError, match="not an /opt/ml tree"):
        lay_out_training_tree(precious, hyperparameters={}, channels={})
    assert (precious / "notes.txt").read_text() == "keep me"


def test_processing_job_config_is_a_valid_create_processing_job_request(
    tmp_path: Path, data: dict[str, Path]
) -> None:
    outputs = {name: tmp_path / "out" / name for name in ("tokenizer", "train", "validation")}
    paths = lay_out_processing_tree(
        tmp_path / "p",
        job_name="prepare-1",
        inputs={"raw": data["train"]},
        outputs=outputs,
        arguments=["prepare", "--vocab-size", "512"],
    )
    config = json.loads(paths.processing_job_config.read_text())
    model = botocore.session.get_session().get_service_model("sagemaker")
    request_shape = model.operation_model("CreateProcessingJob").input_shape
    request = {k: v for k, v in config.items() if k in request_shape.members}
    report = ParamValidator().validate(request, request_shape)
    assert not report.has_errors(), report.generate_report()

    assert config["AppSpecification"]["ContainerArguments"] == ["prepare", "--vocab-size", "512"]
    (raw,) = config["ProcessingInputs"]
    assert Path(raw["S3Input"]["LocalPath"]) == paths.root / "processing" / "input" / "raw"
    assert (Path(raw["S3Input"]["LocalPath"]) / "nested" / "train.bin").is_file()
    for output in config["ProcessingOutputConfig"]["Outputs"]:
        assert Path(output["S3Output"]["LocalPath"]).is_dir()
        assert output["S3Output"]["LocalPath"].endswith(f"processing/output/{output['OutputName']}")
    assert json.loads(paths.processing_resource_config.read_text()) == {
        "current_host": "algo-1",
        "hosts": ["algo-1"],
    }

    seen_in_docker = lay_out_processing_tree(
        tmp_path / "d",
        job_name="prepare-2",
        inputs={"raw": data["train"]},
        outputs=outputs,
        arguments=["prepare"],
        container_root="/opt/ml",
    )
    config = json.loads(seen_in_docker.processing_job_config.read_text())
    assert config["ProcessingInputs"][0]["S3Input"]["LocalPath"] == "/opt/ml/processing/input/raw"
