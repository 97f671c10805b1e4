"""A local endpoint: model data (model.tar.gz unpacked, or an uncompressed model directory copied) in a fresh
tree, `serve` started on it, invoked over HTTP."""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jax_llm.contract.paths import SageMakerPaths
from jax_llm.contract.serving import PORT_VARIABLE, PROGRAM_VARIABLE
from local_mode.container_engine import ContainerEngine, container_name
from local_mode.packaging import add_code, unpack_model
from local_mode.runner import HostCommand, Log, free_port, host_environment, say, start_process

READY_TIMEOUT_S = (
    600.0  # ContainerStartupHealthCheckTimeoutInSeconds may be up to 3600; loading here takes seconds
)
INVOKE_TIMEOUT_S = 60.0  # InvokeEndpoint's fixed client timeout


class EndpointError(RuntimeError):
    """The server exited or never became healthy; the message carries its last output lines."""


class LocalEndpoint:
    """One `serve` process on a fresh tree; a context manager that stops it (SIGTERM, as a scale-in does)."""

    def __init__(
        self,
        model_archive: Path,
        root: Path,
        *,
        port: int | None = None,
        engine: ContainerEngine | None = None,
        entry_point: str | None = None,
        source_dir: Path | None = None,
        environment: Mapping[str, str] | None = None,
        log: Log = print,
    ):
        """`entry_point` in `source_dir`: the team's inference handler, added to the model as the SDK's
        `Model(entry_point=..., source_dir=...)` repacks it (into `code/`, SAGEMAKER_PROGRAM naming it).
        `environment`: more of the container's variables (a transform job's SAGEMAKER_BATCH and the like)."""
        self.paths: SageMakerPaths = unpack_model(model_archive, root)
        environment = dict(environment or {})
        if entry_point:
            add_code(self.paths.model, source_dir or Path("."), entry_point)
            environment[PROGRAM_VARIABLE] = entry_point
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.lines: list[str] = []
        if engine is not None:  # on the engine's bridge: SageMaker's port 8080 published on the loopback
            self.command = HostCommand.in_container(
                engine,
                self.paths.root,
                ["serve"],
                name=container_name(root.name, f"serve-{self.port}"),
                hostname="algo-1",
                env=environment,
                network=None,
                port=self.port,
            )
        else:
            env = host_environment(self.paths, {PORT_VARIABLE: str(self.port), **environment})
            self.command = HostCommand([sys.executable, "-m", "jax_llm", "serve"], env)
        say(f"serving {model_archive} at {self.url} (model data in {self.paths.model})")
        # Stopped by SIGTERM, not Ctrl-C, as SageMaker stops an endpoint's container.
        self.process, self._pump = start_process(
            self.command.argv, self.command.env, prefix="[serve] ", sink=self.lines, log=log
        )

    def wait_until_healthy(self, timeout_s: float = READY_TIMEOUT_S) -> float:
        """Polls /ping until 200 (503: still loading) as SageMaker's health check does; returns seconds."""
        start = time.monotonic()
        while time.monotonic() - start < timeout_s:
            if self.process.poll() is not None:
                tail = "\n".join(self.lines[-20:])
                raise EndpointError(
                    f"serve exited with code {self.process.returncode} before it was healthy:\n{tail}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/ping", timeout=2) as response:
                    if response.status == 200:
                        return time.monotonic() - start
            except urllib.error.HTTPError as answer:
                if answer.code != 503:  # 503: still loading; 500: the load failed and says why
                    raise EndpointError(
                        f"serve answered /ping {answer.code}: {answer.read().decode()}"
                    ) from None
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass  # not listening yet
            time.sleep(0.5)
        tail = "\n".join(self.lines[-20:])
        raise EndpointError(f"serve did not answer /ping with 200 within {timeout_s:.0f} s:\n{tail}")

    def invoke(self, prompt: str, **parameters: Any) -> Any:
        """POST /invocations in TGI's schema; returns the decoded JSON body; EndpointError on 4xx/5xx."""
        body = json.dumps({"inputs": prompt, "parameters": parameters}).encode()
        request = urllib.request.Request(
            f"{self.url}/invocations",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=INVOKE_TIMEOUT_S) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            raise EndpointError(
                f"/invocations answered {error.code}: {error.read().decode(errors='replace')}"
            ) from None

    def close(self) -> int:
        """Stops the server and returns its exit code."""
        code = self.command.stop(self.process)
        self._pump.join(timeout=5)
        return code

    def __enter__(self) -> LocalEndpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
