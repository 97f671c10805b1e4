"""SageMaker jobs on this machine: the image's entry points on /opt/ml trees, as processes or containers.

<workdir>/<job>/algo-1/ ... algo-N/   one /opt/ml tree per host (training), or <job>/processing-tree/
<workdir>/<job>/output/               what SageMaker uploads to S3: model.tar.gz, output.tar.gz, or
                                      uncompressed (CompressionType NONE) model/ and data/
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from jax_llm.contract.failure import FAILURE_REASON_CHARS
from jax_llm.contract.paths import (
    BASE_DIR_VARIABLE,
    CODE_CHANNEL,
    COMPRESSION_TYPES,
    IMAGE_SOURCE,
    JOB_NAME_ENV,
    MODEL_ARCHIVE,
    MODEL_PREFIX,
    OUTPUT_ARCHIVE,
    OUTPUT_DATA_PREFIX,
    SOURCE_ARCHIVE,
    SageMakerPaths,
)
from jax_llm.contract.script_mode import PROGRAM, SUBMIT_DIRECTORY
from local_mode.container_engine import CONTAINER_ROOT, ISOLATED, ContainerEngine, container_name
from local_mode.packaging import (
    PackagingError,
    copy_directories,
    pack_directories,
    pack_source,
    package_model,
)
from local_mode.tree import host_names, lay_out_processing_tree, lay_out_training_tree

REPO = Path(__file__).resolve().parent.parent
STOP_GRACE_S = 30.0  # SIGTERM, then SIGKILL this much later (SageMaker waits 120 s; a laptop user less)
CLIENT_EXIT_S = 30.0  # a `docker/podman run` client's wait for its stopped container's exit code

Log = Callable[[str], None]


def say(line: str) -> None:
    """A progress line from the runner itself, told apart from the container's own output."""
    print(f"[local_mode] {line}", flush=True)


@dataclasses.dataclass
class JobResult:
    """Exit code and failure text per host; the job succeeded only if every host exited 0."""

    name: str
    trees: dict[str, SageMakerPaths]
    exit_codes: dict[str, int]
    failures: dict[str, str]
    log: str
    output_dir: Path

    @property
    def ok(self) -> bool:
        return all(code == 0 for code in self.exit_codes.values())

    @property
    def failure_reason(self) -> str:
        """What DescribeTrainingJob's FailureReason would say: the first failing host's failure file."""
        for host, code in self.exit_codes.items():
            if code != 0:
                text = self.failures.get(host) or f"exited with code {code} and wrote no failure file"
                return f"{host}: {text[:FAILURE_REASON_CHARS]}"
        return ""

    @property
    def summary(self) -> str:
        """The failure reason's first line and where its whole text is (the console showed the rest)."""
        for host, code in self.exit_codes.items():
            if code != 0:
                first = self.failure_reason.splitlines()[0]
                written = [p for p in (self.trees[host].failure, self.trees[host].message) if p.is_file()]
                return f"{first} (full text: {written[0]})" if written else first
        return ""

    @property
    def model_archive(self) -> Path:
        return self.output_dir / MODEL_ARCHIVE

    @property
    def model_data(self) -> Path:
        """What ModelArtifacts.S3ModelArtifacts names: model.tar.gz, or the uncompressed model's prefix."""
        prefix = self.output_dir / MODEL_PREFIX
        return prefix if prefix.is_dir() else self.model_archive


def free_port() -> int:
    """A TCP port nobody listens on now (the coordinator's, or the server's)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def host_environment(paths: SageMakerPaths, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment of an entry point run on the host: the container's sources importable, the tree as root."""
    return {
        **os.environ,
        "PYTHONPATH": str(
            IMAGE_SOURCE
        ),  # only what the image holds: a stray import fails here as it would there
        "PYTHONUNBUFFERED": "1",
        BASE_DIR_VARIABLE: str(paths.root),
        **(extra or {}),
    }


def start_process(
    argv: list[str], env: Mapping[str, str], *, prefix: str, sink: list[str], log: Log
) -> tuple[subprocess.Popen, threading.Thread]:
    """Starts a container stand-in and a thread copying its output, line by line and prefixed, to `sink` and `log`.

    The process gets a session of its own: Ctrl-C reaches only the runner, which sends SIGTERM as
    SageMaker would.
    """
    process = subprocess.Popen(
        argv,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,
    )

    def pump() -> None:
        for line in process.stdout:
            line = line.rstrip("\n")
            sink.append(f"{prefix}{line}")
            log(f"{prefix}{line}")

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return process, thread


def stop(process: subprocess.Popen, grace_s: float = STOP_GRACE_S) -> int:
    """SIGTERM, then SIGKILL after `grace_s`: how SageMaker stops a container."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


@dataclasses.dataclass(frozen=True)
class HostCommand:
    """How one host's container (or its stand-in process) is started, and how SageMaker would stop it."""

    argv: list[str]
    env: Mapping[str, str]
    engine: ContainerEngine | None = None  # set: `argv` runs a container named `container`
    container: str = ""

    @classmethod
    def in_container(
        cls, engine: ContainerEngine, tree: Path, arguments: Sequence[str], *, name: str, **run: Any
    ) -> HostCommand:
        """`arguments` given to the image's ENTRYPOINT in a container `name` with `tree` at /opt/ml
        (`run`: run_argv's hostname, env, network, port)."""
        return cls(engine.run_argv(tree, arguments, container=name, **run), dict(os.environ), engine, name)

    def stop(self, process: subprocess.Popen, grace_s: float = STOP_GRACE_S) -> int:
        """A host process gets SIGTERM itself; a container's PID 1 gets it through `docker/podman stop`.

        Returns the exit code: for a container, its `run` client's, which is the container's own.
        """
        if self.engine is None:
            return stop(process, grace_s)
        if process.poll() is None:
            self.engine.stop(self.container, grace_s)
        try:  # the client ends with its container; a signal now would reach a container already gone
            return process.wait(CLIENT_EXIT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()


def _run_hosts(commands: Mapping[str, HostCommand], log: Log) -> tuple[dict[str, int], str]:
    """One process per host, awaited; when one fails the others are stopped, as SageMaker stops the job."""
    lines: list[str] = []
    prefix = len(commands) > 1
    processes, pumps = {}, []
    for host, command in commands.items():
        processes[host], pump = start_process(
            command.argv, command.env, prefix=f"[{host}] " if prefix else "", sink=lines, log=log
        )
        pumps.append(pump)
    codes: dict[str, int] = {}
    try:
        while len(codes) < len(processes):
            for host, process in processes.items():
                if host not in codes and process.poll() is not None:
                    codes[host] = process.returncode
                    if process.returncode != 0:
                        for other, rest in processes.items():
                            if other not in codes:
                                codes[other] = commands[other].stop(rest)
            time.sleep(0.2)
    finally:  # Ctrl-C: the containers get SIGTERM and their chance to checkpoint
        for host, process in processes.items():
            codes.setdefault(host, commands[host].stop(process))
        for pump in pumps:
            pump.join(timeout=5)
    return codes, "\n".join(lines)


def _read_failure(path: Path) -> str:
    return path.read_text(errors="replace").strip() if path.is_file() else ""


def _network(job_name: str, hosts: list[str]) -> str:
    """One training host has no network at all (network isolation); several share the job's network."""
    return f"{job_name}-net" if len(hosts) > 1 else ISOLATED


def _training_command(
    engine: ContainerEngine | None,
    host: str,
    paths: SageMakerPaths,
    job_name: str,
    hosts: list[str],
    port: int,
    environment: Mapping[str, str],
) -> HostCommand:
    """One host's `train`: a container on the job's network, or a host process."""
    env = {
        **environment,
        JOB_NAME_ENV: job_name,
        "TRAINING_JOB_ARN": f"arn:aws:sagemaker:local:000000000000:training-job/{job_name}",
    }
    if engine is not None:  # containers find algo-1 by name and meet at its port, as on SageMaker
        return HostCommand.in_container(
            engine,
            paths.root,
            ["train"],
            name=container_name(job_name, host),
            hostname=host,
            env=env,
            network=_network(job_name, hosts),
        )
    if len(hosts) > 1:  # algo-1 does not resolve on this machine: the processes meet on the loopback instead
        env["JAX_COORDINATOR_ADDRESS"] = f"127.0.0.1:{port}"
    return HostCommand([sys.executable, "-m", "jax_llm", "train"], host_environment(paths, env))


def run_training(
    workdir: Path,
    job_name: str,
    *,
    hyperparameters: Mapping[str, Any],
    channels: Mapping[str, Path],
    hosts: int = 1,
    instance_type: str = "local",
    checkpoints: Path | None = None,
    engine: ContainerEngine | None = None,
    entry_point: str | None = None,
    source_dir: Path | None = None,
    environment: Mapping[str, str] | None = None,
    compression: str = "GZIP",
    log: Log = print,
) -> JobResult:
    """A training job: one tree and one `train` per host (in `engine`'s containers, or as processes);
    packages model.tar.gz when all succeed (`compression="NONE"`: the model's files under output/model/,
    as OutputDataConfig.CompressionType NONE uploads them). `entry_point` in `source_dir`: the team's own
    script (script mode), sent as the SDK sends it to a job with network isolation: the `code` channel.
    `environment`: the job's Environment map (CreateTrainingJob's), e.g. where MLflow tracking goes."""
    if compression not in COMPRESSION_TYPES:  # refused before any GPU hour is spent (CreateTrainingJob too)
        raise PackagingError(f"compression {compression!r} must be one of {', '.join(COMPRESSION_TYPES)}")
    names = host_names(hosts)
    job_dir = Path(workdir).resolve() / job_name
    if entry_point:
        pack_source(source_dir or Path("."), job_dir / CODE_CHANNEL / SOURCE_ARCHIVE)
        channels = {**channels, CODE_CHANNEL: job_dir / CODE_CHANNEL}

    def script_mode(host: str) -> dict[str, str]:
        if not entry_point:
            return {}
        seen = Path(CONTAINER_ROOT) if engine is not None else job_dir / host
        return {
            PROGRAM: entry_point,
            SUBMIT_DIRECTORY: str(SageMakerPaths(seen).channel(CODE_CHANNEL) / SOURCE_ARCHIVE),
        }

    trees = {
        host: lay_out_training_tree(
            job_dir / host,
            hyperparameters={**hyperparameters, **script_mode(host)},
            channels=channels,
            current_host=host,
            hosts=names,
            instance_type=instance_type,
            checkpoints=checkpoints,
        )
        for host in names
    }
    coordinator_port = free_port()
    commands = {
        host: _training_command(engine, host, paths, job_name, names, coordinator_port, environment or {})
        for host, paths in trees.items()
    }
    say(f"training job {job_name}: {hosts} host(s) {', '.join(names)}, trees under {job_dir}")
    if engine is not None and hosts > 1:
        with engine.network(_network(job_name, names)):
            codes, text = _run_hosts(commands, log)
    else:
        codes, text = _run_hosts(commands, log)
    result = JobResult(
        job_name,
        trees,
        codes,
        {h: _read_failure(p.failure) for h, p in trees.items()},
        text,
        job_dir / "output",
    )
    if checkpoints:
        # Every host syncs its checkpoints/ to the one S3 prefix, continuously, so a failed or stopped job
        # keeps them too; the next job restores the union into each host (so hosts namespace their files).
        for paths in trees.values():
            shutil.copytree(paths.checkpoints, checkpoints, dirs_exist_ok=True)
    if result.ok:
        output_data = [p.output_data for p in trees.values()]
        if compression == "NONE":
            package_model([p.model for p in trees.values()], result.output_dir / MODEL_PREFIX, compression)
            copy_directories(output_data, result.output_dir / OUTPUT_DATA_PREFIX)
        else:
            package_model([p.model for p in trees.values()], result.model_archive, compression)
            pack_directories(output_data, result.output_dir / OUTPUT_ARCHIVE)
        say(f"training job {job_name} completed; model: {result.model_data}")
    else:
        say(f"training job {job_name} failed: {result.summary}")
    return result


def run_processing(
    workdir: Path,
    job_name: str,
    *,
    inputs: Mapping[str, Path],
    outputs: Mapping[str, Path],
    arguments: Sequence[str],
    engine: ContainerEngine | None = None,
    log: Log = print,
) -> JobResult:
    """A processing job: inputs copied in, the container run, outputs copied out on success."""
    paths = lay_out_processing_tree(
        Path(workdir).resolve() / job_name / "processing-tree",
        job_name=job_name,
        inputs=inputs,
        outputs=outputs,
        arguments=arguments,
        container_root=CONTAINER_ROOT if engine else None,
    )
    if engine is not None:
        command = HostCommand.in_container(
            engine, paths.root, arguments, name=container_name(job_name, "algo-1"), hostname="algo-1", env={}
        )
    else:
        command = HostCommand([sys.executable, "-m", "jax_llm", *arguments], host_environment(paths))
    say(f"processing job {job_name}: {' '.join(arguments)}; tree at {paths.root}")
    codes, text = _run_hosts({"algo-1": command}, log)
    result = JobResult(
        job_name,
        {"algo-1": paths},
        codes,
        {"algo-1": _read_failure(paths.message) or _read_failure(paths.failure)},
        text,
        Path(workdir).resolve() / job_name / "output",
    )
    if result.ok:
        for name, destination in outputs.items():  # S3UploadMode EndOfJob
            shutil.copytree(paths.processing / "output" / name, destination, dirs_exist_ok=True)
        say(f"processing job {job_name} completed; outputs: {', '.join(str(d) for d in outputs.values())}")
    else:
        say(f"processing job {job_name} failed: {result.summary}")
    return result
