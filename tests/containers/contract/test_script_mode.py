"""Script mode on the host: `python -m jax_llm train` with `sagemaker_program` runs the team's own script.

The tree is what SageMaker (and local mode) lays out; the script reports from inside what it was given.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import sysconfig
import tarfile
import time
import zipfile
from pathlib import Path
from venv import EnvBuilder

import pytest

from tests.support import (
    REPO,
    free_port,
    run_training,
    start_training,
    train_command_env,
    write_training_tree,
)

EXAMPLE = REPO / "examples" / "script_mode" / "src"

# Writes what it received into the model directory, so the test can read it back.
REPORTER = """
import json, os, sys
from pathlib import Path
keys = ("SM_MODEL_DIR", "SM_CHANNEL_TRAIN", "SM_HPS", "SM_HP_EPOCHS", "SM_HOSTS", "SM_CURRENT_HOST",
        "SM_NUM_GPUS", "SM_OUTPUT_DATA_DIR", "SM_CHANNELS", "PYTHONUNBUFFERED")
report = {"argv": sys.argv[1:], "env": {k: os.environ.get(k) for k in keys}, "cwd": os.getcwd()}
try:
    import tinydep
    report["tinydep"] = tinydep.VALUE
except ImportError:
    pass
Path(os.environ["SM_MODEL_DIR"], "report.json").write_text(json.dumps(report))
"""

SDK_HYPERPARAMETERS = {"learning-rate": "0.0003", "batch-size": "512", "epochs": "20"}


def script_tree(root: Path, source: str, program: str = "train.py", **extra: str) -> Path:
    hyperparameters = {
        **SDK_HYPERPARAMETERS,
        "sagemaker_program": json.dumps(program),
        "sagemaker_submit_directory": json.dumps(source),
        "sagemaker_region": '"us-east-1"',
        **extra,
    }
    return write_training_tree(root, hyperparameters)


def source_dir(path: Path, script: str = REPORTER, requirements: str | None = None) -> Path:
    path.mkdir(parents=True)
    (path / "train.py").write_text(script)
    if requirements is not None:
        (path / "requirements.txt").write_text(requirements)
    return path


def tar_gz(directory: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(directory.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(directory)), recursive=False)
    return archive


def report(root: Path) -> dict:
    return json.loads((root / "model" / "report.json").read_text())


def assert_sdk_view(root: Path, got: dict) -> None:
    """The arguments and SM_* values the training toolkit gives a script."""
    assert got["argv"] == ["--batch-size", "512", "--epochs", "20", "--learning-rate", "0.0003"]
    env = got["env"]
    assert env["SM_MODEL_DIR"] == str(root / "model")
    assert env["SM_CHANNEL_TRAIN"] == str(root / "input" / "data" / "train")
    assert json.loads(env["SM_HPS"]) == {"batch-size": 512, "epochs": 20, "learning-rate": 0.0003}
    assert env["SM_HP_EPOCHS"] == "20" and json.loads(env["SM_HOSTS"]) == ["algo-1"]
    assert env["SM_CURRENT_HOST"] == "algo-1" and env["SM_NUM_GPUS"] == "0"
    assert env["SM_OUTPUT_DATA_DIR"] == str(root / "output" / "data")
    assert json.loads(env["SM_CHANNELS"]) == ["train"] and env["PYTHONUNBUFFERED"] == "1"
    assert got["cwd"] == str(root / "code")


def test_a_local_directory_source_runs_with_the_toolkit_s_arguments_and_environment(tmp_path):
    root = script_tree(tmp_path / "ml", str(source_dir(tmp_path / "src")))
    code, log = run_training(root)
    assert code == 0, log[-3000:]
    assert_sdk_view(root, report(root))
    assert not (root / "output" / "failure").exists()


@pytest.mark.parametrize(
    "name", ["sourcedir.tar.gz", "35d70dd8de9c.gz"]
)  # the SDK's name; the stack's asset's
def test_a_local_tar_gz_source_as_the_code_channel_under_network_isolation(tmp_path, name):
    root = tmp_path / "ml"
    archive = tar_gz(source_dir(tmp_path / "src"), tmp_path / "sourcedir.tar.gz")
    channel = root / "input" / "data" / "code"
    channel.mkdir(parents=True)
    (channel / name).write_bytes(archive.read_bytes())
    script_tree(root, str(channel / name))
    code, log = run_training(root)
    assert code == 0, log[-3000:]
    assert_sdk_view(root, report(root))


def test_an_s3_source_is_fetched_with_the_toolkit(tmp_path, moto_server):
    import boto3

    archive = tar_gz(source_dir(tmp_path / "src"), tmp_path / "sourcedir.tar.gz")
    s3 = boto3.client(
        "s3",
        endpoint_url=moto_server,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    s3.create_bucket(Bucket="team-code")
    s3.upload_file(str(archive), "team-code", "job/source/sourcedir.tar.gz")
    root = script_tree(tmp_path / "ml", "s3://team-code/job/source/sourcedir.tar.gz")
    code, log = run_training(
        root,
        S3_ENDPOINT_URL=moto_server,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION="us-east-1",
    )
    assert code == 0, log[-3000:]
    assert_sdk_view(root, report(root))


def _wheel(directory: Path, name: str = "tinydep", version: str = "1.0") -> None:
    """A pure-Python wheel, made by hand: what a team ships beside its code for an isolated job."""
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}.py": "VALUE = 42\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{path},,\n" for path in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(directory / f"{name}-{version}-py3-none-any.whl", "w") as wheel:
        for path, text in {**files, f"{info}/RECORD": record}.items():
            wheel.writestr(path, text)


def test_requirements_are_installed_from_wheels_shipped_in_the_source(tmp_path):
    src = source_dir(tmp_path / "src", requirements="tinydep==1.0\n")
    _wheel(src)
    # pip installs into the job's own Python: here a venv that sees the test's packages (not the test's venv).
    venv = tmp_path / "venv"
    EnvBuilder(with_pip=False).create(venv)
    site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    (site / "parent.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    root = script_tree(tmp_path / "ml", str(src))
    job = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "jax_llm", "train"],
        capture_output=True,
        text=True,
        env=train_command_env(root, PIP_NO_INDEX="1"),
        timeout=300,
    )
    assert job.returncode == 0, (job.stdout + job.stderr)[-3000:]
    assert report(root)["tinydep"] == 42


def test_a_requirement_that_cannot_be_installed_fails_saying_what_to_do(tmp_path):
    root = script_tree(tmp_path / "ml", str(source_dir(tmp_path / "src", requirements="no-such-dist==9.9\n")))
    started = time.monotonic()
    code, log = run_training(root, PIP_NO_INDEX="1")
    assert code == 1 and time.monotonic() - started < 120
    failure = (root / "output" / "failure").read_text()
    assert failure.startswith("ScriptModeError: could not install requirements.txt: ")
    assert "ship the wheels in the source directory" in failure.splitlines()[0]


def test_a_failing_script_fails_the_job_with_its_error_first_and_its_exit_code(tmp_path):
    script = "import sys\nprint('epoch 1', flush=True)\nraise ValueError('epochs must be positive, got -3')\n"
    root = script_tree(tmp_path / "ml", str(source_dir(tmp_path / "src", script)))
    code, log = run_training(root)
    assert code == 1 and "epoch 1" in log
    failure = (root / "output" / "failure").read_text()
    assert failure.startswith("ValueError: epochs must be positive, got -3\n(train.py exited with code 1)")
    assert "Traceback (most recent call last):" in failure
    exits = script_tree(tmp_path / "ml2", str(source_dir(tmp_path / "src2", "import sys; sys.exit(7)\n")))
    assert run_training(exits)[0] == 7  # the script's own exit code is the job's


def test_sigterm_reaches_the_script_and_the_job_waits_for_it(tmp_path):
    script = """
import os, signal, sys, time
from pathlib import Path
def stop(signum, frame):
    time.sleep(2)  # a checkpoint being saved: the job must wait for it
    Path(os.environ["SM_MODEL_DIR"], "stopped").write_text("saved after SIGTERM")
    sys.exit(143)
signal.signal(signal.SIGTERM, stop)
print("ready", flush=True)
time.sleep(300)
"""
    root = script_tree(tmp_path / "ml", str(source_dir(tmp_path / "src", script)))
    process = start_training(root, tmp_path / "job.log")
    deadline = time.monotonic() + 120
    while "ready" not in (tmp_path / "job.log").read_text():  # printed unbuffered, seen at once
        assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "job.log").read_text()
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 143
    assert (root / "model" / "stopped").read_text() == "saved after SIGTERM"


def test_two_hosts_initialise_jax_distributed_from_the_variables(tmp_path):
    hosts = ("algo-1", "algo-2")
    src = source_dir(tmp_path / "src", (EXAMPLE / "train.py").read_text())
    address = f"127.0.0.1:{free_port()}"
    processes, roots = [], []
    for host in hosts:
        root = write_training_tree(
            tmp_path / host,
            {
                "epochs": "1",
                "batch-size": "512",
                "sagemaker_program": '"train.py"',
                "sagemaker_submit_directory": json.dumps(str(src)),
            },
            hosts=hosts,
            current_host=host,
        )
        roots.append(root)
        processes.append(start_training(root, tmp_path / f"{host}.log", JAX_COORDINATOR_ADDRESS=address))
    codes = [p.wait(timeout=300) for p in processes]
    logs = [(tmp_path / f"{host}.log").read_text() for host in hosts]
    assert codes == [0, 0], "\n".join(log[-2000:] for log in logs)
    assert json.loads((roots[0] / "model" / "hosts.json").read_text()) == {
        "processes": 2,
        "hosts": list(hosts),
    }
    assert not (roots[1] / "model" / "bigram.npy").exists()  # the example writes from one host
    assert all("epoch 1/1 loss=" in log for log in logs)
