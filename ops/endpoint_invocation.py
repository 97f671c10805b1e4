"""Invokes the deployed endpoint with TGI's schema, whole or streamed (InvokeEndpointWithResponseStream)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from botocore.exceptions import ClientError

from ops.aws import Aws
from ops.errors import OpsError, not_found_as

CONTENT_TYPE = "application/json"


def tgi_request(prompt: str, parameters: dict[str, Any], stream: bool) -> bytes:
    """The request body: {"inputs", "parameters", "stream"}; parameters left as None are not sent."""
    chosen = {key: value for key, value in parameters.items() if value is not None}
    return json.dumps({"inputs": prompt, "parameters": chosen, "stream": stream}).encode()


def require_in_service(aws: Aws, endpoint_name: str) -> None:
    """Raises an OpsError unless the endpoint exists and is InService (or Updating, which still serves)."""
    sagemaker = aws.client("sagemaker")
    missing = f"Endpoint {endpoint_name!r} does not exist: deploy it with `cdk deploy EndpointStack`."
    with not_found_as(missing):
        status = sagemaker.describe_endpoint(EndpointName=endpoint_name)["EndpointStatus"]
    if status not in ("InService", "Updating", "SystemUpdating"):
        raise OpsError(
            f"Endpoint {endpoint_name!r} is {status}, not InService; check the stack events and its logs."
        )


def _runtime_error(exc: ClientError) -> OpsError:
    """The container's JSON error ({"error", "error_type"} in ModelError's OriginalMessage) if it sent one."""
    error = exc.response.get("Error", {})
    try:
        body = json.loads(exc.response.get("OriginalMessage") or "null")
    except ValueError:
        body = None
    if isinstance(body, dict) and "error" in body:
        return OpsError(f"The model refused the request ({body.get('error_type', 'error')}): {body['error']}")
    return OpsError(f"Invocation failed ({error.get('Code', 'Unknown')}): {error.get('Message', exc)}")


def invoke(aws: Aws, endpoint_name: str, body: bytes) -> list[dict[str, Any]]:
    """One InvokeEndpoint call; returns TGI's response list [{"generated_text": ...}]."""
    runtime = aws.client("sagemaker-runtime")
    try:
        response = runtime.invoke_endpoint(
            EndpointName=endpoint_name, Body=body, ContentType=CONTENT_TYPE, Accept=CONTENT_TYPE
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("ModelError", "ValidationError"):
            raise _runtime_error(exc) from exc
        raise
    payload = response["Body"].read()
    try:
        generations = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise OpsError(f"The endpoint answered with non-JSON: {payload[:200]!r}") from exc
    if not isinstance(generations, list) or not all(isinstance(g, dict) for g in generations):
        raise OpsError(
            f"The endpoint answered outside TGI's schema (expected a list of objects): {payload[:200]!r}"
        )
    return generations


class ServerSentEvents:
    """Reassembles `data:` events from byte chunks split anywhere (PayloadPart boundaries are arbitrary)."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> Iterator[dict[str, Any]]:
        """Yields every complete event in the buffer after appending `chunk`."""
        self._buffer += chunk
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            line = line.rstrip(b"\r")
            if line.startswith(b"data:"):
                yield json.loads(line[len(b"data:") :])

    def close(self) -> None:
        """Raises an OpsError if the stream ended in the middle of an event."""
        if self._buffer.strip():
            raise OpsError(f"The stream ended mid-event: {self._buffer[:200]!r}")


def stream_tokens(events: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Turns TGI stream events into token events; a final event's full text ends it; an error event raises."""
    for event in events:
        if "error" in event:
            raise OpsError(
                f"The model failed mid-stream ({event.get('error_type', 'error')}): {event['error']}"
            )
        yield event


def invoke_stream(aws: Aws, endpoint_name: str, body: bytes) -> Iterator[dict[str, Any]]:
    """InvokeEndpointWithResponseStream: yields TGI events ({"token", "generated_text", ...}) as they come."""
    runtime = aws.client("sagemaker-runtime")
    try:
        response = runtime.invoke_endpoint_with_response_stream(
            EndpointName=endpoint_name, Body=body, ContentType=CONTENT_TYPE, Accept="text/event-stream"
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("ModelError", "ValidationError"):
            raise _runtime_error(exc) from exc
        raise
    yield from stream_tokens(decode_event_stream(response["Body"]))


def decode_event_stream(event_stream: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Decodes botocore's EventStream ({"PayloadPart": {"Bytes"}} or error events) into TGI events."""
    events = ServerSentEvents()
    for message in event_stream:
        if "PayloadPart" in message:
            yield from events.feed(message["PayloadPart"]["Bytes"])
            continue
        for kind in ("ModelStreamError", "InternalStreamFailure"):
            if kind in message:
                raise OpsError(
                    f"The endpoint's stream failed ({kind}): {message[kind].get('Message', message[kind])}"
                )
    events.close()
