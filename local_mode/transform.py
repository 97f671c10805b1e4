"""A batch transform job on this machine, as SageMaker runs one: the container served, then fed line by line.

SageMaker's CreateTransformJob with SplitType Line, BatchStrategy SingleRecord and AssembleWith Line: the
image runs `serve` with the transform variables (`jax_llm.contract.transform`); once /ping says 200, the
job reads `/execution-parameters` for its concurrency and payload limit, POSTs every line of the input
object as one request (at most MaxConcurrentTransforms at once), and writes the answers, one per line in
input order, to `<output>/<input name>.out`. A record answered with an error fails the job, naming the
line, and nothing is written (SageMaker writes no partial output object either).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

from jax_llm.contract.transform import (
    BATCH_STRATEGY_VARIABLE,
    BATCH_VARIABLE,
    DEFAULT_INVOCATION_TIMEOUT_S,
    DEFAULT_MAX_PAYLOAD_MB,
    EXECUTION_PARAMETERS_PATH,
    MAX_PAYLOAD_VARIABLE,
    OUTPUT_SUFFIX,
)
from local_mode.container_engine import ContainerEngine
from local_mode.endpoint import LocalEndpoint
from local_mode.runner import Log, say


class TransformError(RuntimeError):
    """The input cannot be sent, or a record was answered with an error; the message names the line."""


@dataclasses.dataclass(frozen=True)
class TransformResult:
    """Where the answers went, how many records, and how long the job took once the container was ready."""

    output: Path
    records: int
    concurrency: int
    ready_s: float  # container start to /ping 200
    transform_s: float  # the records, sent and answered


def read_records(input_file: Path, max_payload_mb: int) -> list[tuple[int, bytes]]:
    """The input's lines (SplitType Line) with their line numbers, each one record; blank lines are skipped;
    a line over the payload limit is refused before anything is sent."""
    if not input_file.is_file():
        raise TransformError(f"input {input_file} does not exist")
    records = []
    for number, line in enumerate(input_file.read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        if len(line) > max_payload_mb * 1024 * 1024:
            raise TransformError(
                f"{input_file}:{number}: a record of {len(line)} bytes exceeds {max_payload_mb} MB"
            )
        records.append((number, line))
    if not records:
        raise TransformError(f"input {input_file} holds no records")
    return records


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def _invoke(url: str, record: bytes, timeout_s: float) -> bytes:
    request = urllib.request.Request(
        f"{url}/invocations",
        data=record,
        method="POST",
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return response.read()


def send_records(
    url: str, records: list[tuple[int, bytes]], concurrency: int, timeout_s: float, input_name: str
) -> list[bytes]:
    """Every record POSTed to `url` (at most `concurrency` at once); the answers in input order."""

    def one(item: tuple[int, bytes]) -> bytes:
        number, record = item
        try:
            return _invoke(url, record, timeout_s)
        except urllib.error.HTTPError as error:
            body = error.read().decode(errors="replace")
            raise TransformError(
                f"{input_name}:{number}: /invocations answered {error.code}: {body}"
            ) from None

    with concurrent.futures.ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(one, records))


def run_transform(
    model: Path,
    input_file: Path,
    output_dir: Path,
    workdir: Path,
    *,
    engine: ContainerEngine | None = None,
    max_concurrent: int | None = None,
    log: Log = print,
) -> TransformResult:
    """One transform job over `input_file` with the model data `model` (model.tar.gz or a directory), served
    in `engine`'s container (or as a host process); answers in `output_dir/<input name>.out`.
    `max_concurrent`: the job's MaxConcurrentTransforms; None asks the container's /execution-parameters."""
    input_file, output_dir = Path(input_file), Path(output_dir)
    environment = {
        BATCH_VARIABLE: "true",
        BATCH_STRATEGY_VARIABLE: "SINGLE_RECORD",
        MAX_PAYLOAD_VARIABLE: str(DEFAULT_MAX_PAYLOAD_MB),
    }
    records = read_records(input_file, DEFAULT_MAX_PAYLOAD_MB)
    start = time.monotonic()
    with LocalEndpoint(model, Path(workdir), engine=engine, environment=environment, log=log) as endpoint:
        endpoint.wait_until_healthy()
        ready_s = time.monotonic() - start
        parameters = _get_json(endpoint.url + EXECUTION_PARAMETERS_PATH)
        concurrency = max_concurrent or int(parameters.get("MaxConcurrentTransforms", 1))
        say(f"transform: {len(records)} records of {input_file} at concurrency {concurrency}")
        sent = time.monotonic()
        answers = send_records(
            endpoint.url, records, concurrency, DEFAULT_INVOCATION_TIMEOUT_S, input_file.name
        )
        transform_s = time.monotonic() - sent
    # AssembleWith Line: each answer on its own line (an answer is one JSON document, without newlines).
    output_dir.mkdir(parents=True, exist_ok=True)
    output = output_dir / (input_file.name + OUTPUT_SUFFIX)
    output.write_bytes(b"".join(answer.rstrip(b"\n") + b"\n" for answer in answers))
    say(f"transform: {len(answers)} answers in {output} ({transform_s:.1f} s after a {ready_s:.1f} s start)")
    return TransformResult(output, len(answers), concurrency, ready_s, transform_s)
