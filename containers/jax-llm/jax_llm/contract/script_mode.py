"""SageMaker script mode: the team's own entry point, run the way the training toolkit runs it.

The SDK's `Estimator(image_uri, entry_point="train.py", source_dir="src/")` sends `sagemaker_program`
and `sagemaker_submit_directory` among the hyperparameters. The toolkit's own library
(`sagemaker_training`, pinned) fetches the source (an `s3://` tar.gz, a local tar.gz or a directory) and
computes what the script gets: the hyperparameters as command-line arguments (`--batch-size 512`) and the
`SM_*` environment (`SM_MODEL_DIR`, `SM_CHANNEL_TRAIN`, `SM_HPS`, ...). Its process runner is not used,
because of what it gets wrong, fixed here:

- SIGTERM (StopTrainingJob, MaxRuntime, spot) reaches the script, and the job waits for it (SageMaker
  sends SIGKILL 120 s after SIGTERM);
- the script's stdout and stderr stream unbuffered, as they are written;
- the script's exit code is the job's, and `output/failure` starts with its error (`Type: message`,
  from the end of its traceback), then its last lines, within SageMaker's 1024 characters.

Several hosts: JAX_COORDINATOR_ADDRESS (read by `jax.distributed.initialize()` itself), JAX_NUM_PROCESSES
and JAX_PROCESS_ID come from `resourceconfig.json` by the same rules as the built-in trainer's; the script
joins with `jax_llm.contract.distributed.join_cluster()`, which reads them (or SDK v3's SM_* variables).
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path

from jax_llm.contract import distributed
from jax_llm.contract.failure import FAILURE_REASON_CHARS
from jax_llm.contract.hyperparameters import decode_hyperparameter
from jax_llm.contract.paths import BASE_DIR_VARIABLE, CODE_CHANNEL, SOURCE_ARCHIVE, SageMakerPaths
from jax_llm.contract.requirements import pip_install

PROGRAM = "sagemaker_program"
SUBMIT_DIRECTORY = "sagemaker_submit_directory"
CODE_CHANNEL_SOURCE = (
    f"input/data/{CODE_CHANNEL}/{SOURCE_ARCHIVE}"  # where the SDK points it under network isolation
)
TAIL_LINES = 40


class ScriptModeError(RuntimeError):
    """The user's code could not be fetched, installed or started; the message says what to do."""


def _text(raw: str) -> str:
    """A string hyperparameter by the toolkit's rule (decode_hyperparameter: "\"train.py\"" -> train.py)."""
    value = decode_hyperparameter(raw)
    return value if isinstance(value, str) else raw


def requested(raw_hyperparameters: Mapping[str, str]) -> bool:
    """Whether the job names a user entry point (script mode) rather than training the built-in GPT."""
    return PROGRAM in raw_hyperparameters


def fetch_source(submit_directory: str, code_dir: Path) -> None:
    """The user's source into `code_dir` by the toolkit's rules (s3:// tar.gz, local tar.gz, directory)."""
    from sagemaker_training import files

    if not submit_directory.startswith("s3://") and not Path(submit_directory).exists():
        raise ScriptModeError(
            f"{SUBMIT_DIRECTORY} {submit_directory!r} does not exist in the container "
            f"(with network isolation the SDK sends the source as the `code` channel: "
            f"/opt/ml/{CODE_CHANNEL_SOURCE})"
        )
    try:
        files.download_and_extract(submit_directory, str(code_dir))
    except Exception as error:  # noqa: BLE001 - boto3's, tarfile's and shutil's errors alike
        raise ScriptModeError(
            f"could not fetch {SUBMIT_DIRECTORY} {submit_directory!r}: {type(error).__name__}: {error}"
        ) from error


def install_requirements(code_dir: Path) -> None:
    """`pip install -r requirements.txt` when the source has one, preferring wheels shipped beside it."""
    if (failure := pip_install(code_dir)) is not None:
        raise ScriptModeError(
            f"could not install requirements.txt: {failure}. A training job with network "
            "isolation cannot reach PyPI: ship the wheels in the source directory "
            "(pip download -r requirements.txt -d src/wheels) and they are installed from there"
        )


def command(program: str, code_dir: Path) -> list[str]:
    """The toolkit's entry point types: a `.py` file, a shell script, or else a module (`python -m`)."""
    path = code_dir / program
    if program.endswith(".py"):
        if not path.is_file():
            raise ScriptModeError(
                f"{PROGRAM} {program!r} is not in the source directory "
                f"(it holds: {', '.join(sorted(p.name for p in code_dir.iterdir())[:20])})"
            )
        return [sys.executable, "-u", str(path)]
    if program.endswith(".sh"):
        return ["/bin/bash", str(path)]
    return [sys.executable, "-u", "-m", program]


def jax_environment(paths: SageMakerPaths, environ: Mapping[str, str]) -> dict[str, str]:
    """What `jax.distributed.initialize()` needs on several hosts; nothing on one."""
    spec = distributed.read_cluster_spec(paths.resource_config)
    if spec.process_count == 1:
        return {}
    coordinator = environ.get("JAX_COORDINATOR_ADDRESS") or f"{spec.hosts[0]}:{distributed.COORDINATOR_PORT}"
    extra = {
        "JAX_COORDINATOR_ADDRESS": coordinator,
        "JAX_NUM_PROCESSES": str(spec.process_count),
        "JAX_PROCESS_ID": str(spec.process_id),
    }
    if distributed.usable_interface(spec.network_interface):  # SDK v3's local `ethwe` does not exist
        extra[distributed.NCCL_INTERFACE] = spec.network_interface
    return extra


def failure_text(tail: list[str], code: int, program: str) -> str:
    """`Type: message` of the script's error first (the last line of its traceback), then its last lines."""
    lines = [line for line in tail if line.strip()]
    error = next(
        (
            line
            for line in reversed(lines)
            if not line.startswith((" ", "\t"))
            and ": " in line
            and line.split(":", 1)[0].replace(".", "").isidentifier()
        ),
        None,
    )
    head = f"{error or (lines[-1] if lines else 'no error output')}\n({program} exited with code {code})"
    return f"{head[:FAILURE_REASON_CHARS]}\n\n" + "\n".join(lines)


def run(paths: SageMakerPaths, raw_hyperparameters: Mapping[str, str]) -> int:
    """Fetches, installs and runs the user's entry point; returns its exit code (143 after SIGTERM)."""
    from sagemaker_training import environment  # the toolkit's rules for SM_* and the arguments

    program = _text(raw_hyperparameters[PROGRAM])
    submit = _text(raw_hyperparameters.get(SUBMIT_DIRECTORY, '""'))
    code_dir = paths.root / "code"
    if submit:
        fetch_source(submit, code_dir)
    elif not code_dir.is_dir():
        raise ScriptModeError(f"{PROGRAM} is {program!r} but no {SUBMIT_DIRECTORY} says where the source is")
    install_requirements(code_dir)
    for directory in (paths.model, paths.output_data):  # SageMaker's tree has them; a script may assume so
        directory.mkdir(parents=True, exist_ok=True)
    os.environ[BASE_DIR_VARIABLE] = str(paths.root)  # the toolkit reads the tree from here too
    toolkit = environment.Environment()
    env = {
        **os.environ,
        **toolkit.to_env_vars(),
        **jax_environment(paths, os.environ),
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(code_dir), os.environ.get("PYTHONPATH", "")])),
    }
    argv = command(program, code_dir) + [str(a) for a in toolkit.to_cmd_args()]
    print(f"script mode: {' '.join(argv)} (in {code_dir})", flush=True)
    process = subprocess.Popen(argv, cwd=code_dir, env=env, stderr=subprocess.PIPE)
    # SIGTERM goes to the script; the job then waits for it (SageMaker's SIGKILL ends the wait at 120 s).
    signal.signal(signal.SIGTERM, lambda signum, frame: process.send_signal(signal.SIGTERM))
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    pump = threading.Thread(target=_copy_stderr, args=(process, tail), daemon=True)
    pump.start()
    code = process.wait()
    pump.join(timeout=10)
    code = 128 - code if code < 0 else code  # killed by signal N: the shell's 128 + N
    if code != 0:  # the script's own lines were already printed as they came
        paths.failure.parent.mkdir(parents=True, exist_ok=True)
        paths.failure.write_text(failure_text(list(tail), code, program))
    return code


def _copy_stderr(process: subprocess.Popen, tail: collections.deque) -> None:
    """The script's stderr to ours as it comes (unbuffered), keeping its last lines for output/failure."""
    for raw in iter(process.stderr.readline, b""):
        sys.stderr.buffer.write(raw)
        sys.stderr.buffer.flush()
        tail.append(raw.decode(errors="replace").rstrip("\n"))
