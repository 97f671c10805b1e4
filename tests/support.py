"""What the tests share besides fixtures: the repository's paths, free ports, the tiny training job's
hyperparameters and /opt/ml tree, and how a test starts `python -m jax_llm train` on it.

Fixtures (one tiny training run, moto's server, an MLflow server per session) live in `conftest.py` and are
built from these; test modules import from here, never from a conftest.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

from local_mode.runner import free_port

__all__ = [
    "CONTAINER_SRC",
    "CORPUS_MODULES",
    "REPO",
    "TINY_HYPERPARAMETERS",
    "TrainingRun",
    "free_port",
    "run_on_cpu_devices",
    "run_training",
    "start_training",
    "train_command_env",
    "write_stdlib_corpus",
    "write_training_tree",
]

REPO = Path(__file__).resolve().parents[1]
CONTAINER_SRC = REPO / "containers" / "jax-llm"

# Real, varied English-and-code text: a few stdlib modules (about 400 KB).
CORPUS_MODULES = (
    "argparse.py",
    "dataclasses.py",
    "textwrap.py",
    "string.py",
    "json/decoder.py",
    "json/encoder.py",
    "difflib.py",
    "fractions.py",
)

# What the SageMaker SDK sends: every value JSON-encoded, plus keys the trainer must ignore.
TINY_HYPERPARAMETERS = {
    "preset": '"tiny"',
    "max_steps": "24",
    "batch_size": "8",
    "seq_len": "64",
    "learning_rate": "0.003",
    "warmup_steps": "4",
    "vocab_size": "512",
    "log_every": "4",
    "eval_every": "12",
    "eval_batches": "2",
    "checkpoint_every": "12",
    "seed": "7",
    "sagemaker_job_name": '"tiny"',  # sagemaker_program would mean script mode: the team's own code
    "sagemaker_region": '"us-east-1"',
    "sagemaker_container_log_level": "20",
    "_tuning_objective_metric": '"val_loss"',
}


def write_stdlib_corpus(path: Path, modules: tuple[str, ...] = CORPUS_MODULES) -> Path:
    """Concatenates stdlib module sources into one UTF-8 text file (the `train` channel's input)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join((stdlib / m).read_text(encoding="utf-8") for m in modules), encoding="utf-8")
    return path


def write_training_tree(
    root: Path,
    hyperparameters: dict[str, str],
    *,
    hosts=("algo-1",),
    current_host="algo-1",
    corpus: bool = True,
) -> Path:
    """An /opt/ml tree as SageMaker writes it for a training job: config files and the `train` channel."""
    config = root / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    channel = {
        "TrainingInputMode": "File",
        "S3DistributionType": "FullyReplicated",
        "RecordWrapperType": "None",
    }
    (config / "inputdataconfig.json").write_text(json.dumps({"train": channel}))
    (config / "resourceconfig.json").write_text(
        json.dumps(
            {
                "current_host": current_host,
                "current_instance_type": "ml.m5.large",
                "hosts": list(hosts),
                "network_interface_name": "eth0",
            }
        )
    )
    if corpus:
        write_stdlib_corpus(root / "input" / "data" / "train" / "train.txt")
    return root


def train_command_env(root: Path, **extra: str) -> dict[str, str]:
    """The environment `python -m jax_llm train` gets: the tree's root, the package on the path, CPU JAX."""
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(root), "JAX_PLATFORMS": "cpu", **extra}
    env["PYTHONPATH"] = os.pathsep.join([str(CONTAINER_SRC), env.get("PYTHONPATH", "")])
    return env


def run_on_cpu_devices(script: str, devices: int, *args: str, timeout: float = 600):
    """`python -c script *args` in a process of its own whose JAX has `devices` CPU devices (a mesh, a
    split, a compile for several devices); the last line it prints, parsed as JSON."""
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
        "PYTHONPATH": str(CONTAINER_SRC),
    }
    done = subprocess.run(
        [sys.executable, "-c", script, *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def start_training(root: Path, log_file: Path, **env: str) -> subprocess.Popen:
    """Starts `python -m jax_llm train` on `root`, stdout and stderr together into `log_file`."""
    log = open(log_file, "w")  # noqa: SIM115 - owned by the child until it exits
    return subprocess.Popen(
        [sys.executable, "-m", "jax_llm", "train"],
        env=train_command_env(root, **env),
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=root,
    )


def run_training(root: Path, timeout: float = 300, **env: str) -> tuple[int, str]:
    """Runs a training job to its end; returns (exit code, stdout+stderr)."""
    log_file = root.parent / f"{root.name}.log"
    process = start_training(root, log_file, **env)
    try:
        code = process.wait(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
    return code, log_file.read_text()


@dataclasses.dataclass(frozen=True)
class TrainingRun:
    """A finished training job: its /opt/ml tree, exported model and log."""

    root: Path
    log: str

    @property
    def model_dir(self) -> Path:
        return self.root / "model"
