"""Invokes the deployed endpoint, whole or streamed (InvokeEndpointWithResponseStream), in one of the schemas the
container answers on /invocations: TGI's, OpenAI's completions or OpenAI's chat (the body's shape decides)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from botocore.exceptions import ClientError

from ops.aws import Aws
from ops.errors import OpsError, not_found_as

CONTENT_TYPE = "application/json"
SCHEMAS = ("tgi", "completions", "chat")
# TGI's parameter names to OpenAI's, where they differ.
_OPENAI_NAMES = {"max_new_tokens": "max_tokens"}


def tgi_request(prompt: str, parameters: dict[str, Any], stream: bool) -> bytes:
    """The request body: {"inputs", "parameters", "stream"}; parameters left as None are not sent."""
    chosen = {key: value for key, value in parameters.items() if value is not None}
    return json.dumps({"inputs": prompt, "parameters": chosen, "stream": stream}).encode()


def request_body(
    schema: str, prompt: str, parameters: dict[str, Any], stream: bool, system: str | None = None
) -> bytes:
    """The body in `schema`: TGI's, OpenAI's completions (`prompt`) or chat (`messages`, with an optional
    system message). `parameters` use TGI's names; those left as None are not sent."""
    if schema == "tgi":
        return tgi_request(prompt, parameters, stream)
    body: dict[str, Any] = {_OPENAI_NAMES.get(k, k): v for k, v in parameters.items() if v is not None}
    if schema == "chat":
        body["messages"] = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": prompt}
        ]
    else:
        body["prompt"] = prompt
    return json.dumps({**body, "stream": stream}).encode()


def answer_texts(schema: str, answer: Any) -> list[str]:
    """The generated texts of a whole answer in `schema`; an OpsError if it is not in that schema."""
    try:
        if schema == "tgi":
            return [g["generated_text"] for g in answer]
        return [c["message"]["content"] if schema == "chat" else c["text"] for c in answer["choices"]]
    except (KeyError, TypeError):
        expected = "a list of objects" if schema == "tgi" else "an object with choices"
        name = "TGI's schema" if schema == "tgi" else f"OpenAI's {schema} schema"
        raise OpsError(
            f"The endpoint answered outside {name} (expected {expected}): {json.dumps(answer)[:200]}"
        ) from None


def event_text(schema: str, event: dict[str, Any]) -> str:
    """The text one stream event adds: a TGI token (special tokens are not text) or an OpenAI chunk's."""
    if schema == "tgi":
        token = event.get("token") or {}
        return "" if token.get("special") else token.get("text", "")
    if not event.get("choices"):  # the usage chunk
        return ""
    choice = event["choices"][0]
    return (choice.get("delta", {}).get("content") if schema == "chat" else choice.get("text")) or ""


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


def _error_of(body: dict[str, Any]) -> tuple[str, str]:
    """(type, message) of the container's JSON error: TGI's {"error", "error_type"} or OpenAI's
    {"error": {"message", "code", ...}}."""
    error = body["error"]
    if isinstance(error, dict):
        return str(error.get("code") or error.get("type") or "error"), str(error.get("message", error))
    return str(body.get("error_type", "error")), str(error)


def _runtime_error(exc: ClientError) -> OpsError:
    """The container's JSON error (in ModelError's OriginalMessage) if it sent one."""
    error = exc.response.get("Error", {})
    try:
        body = json.loads(exc.response.get("OriginalMessage") or "null")
    except ValueError:
        body = None
    if isinstance(body, dict) and "error" in body:
        kind, message = _error_of(body)
        return OpsError(f"The model refused the request ({kind}): {message}")
    return OpsError(f"Invocation failed ({error.get('Code', 'Unknown')}): {error.get('Message', exc)}")


def _target(endpoint_name: str, component: str | None) -> dict[str, str]:
    """The endpoint, and on an endpoint of inference components the component, that a request goes to."""
    return {"EndpointName": endpoint_name, **({"InferenceComponentName": component} if component else {})}


def invoke(aws: Aws, endpoint_name: str, body: bytes, component: str | None = None) -> Any:
    """One InvokeEndpoint call (to ``component`` when the endpoint serves inference components); returns the
    decoded JSON answer."""
    runtime = aws.client("sagemaker-runtime")
    try:
        response = runtime.invoke_endpoint(
            **_target(endpoint_name, component), Body=body, ContentType=CONTENT_TYPE, Accept=CONTENT_TYPE
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("ModelError", "ValidationError"):
            raise _runtime_error(exc) from exc
        raise
    payload = response["Body"].read()
    try:
        return json.loads(payload)
    except json.JSONDecodeError as exc:
        raise OpsError(f"The endpoint answered with non-JSON: {payload[:200]!r}") from exc


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
                data = line[len(b"data:") :].strip()
                if data != b"[DONE]":  # OpenAI's end of stream
                    yield json.loads(data)

    def close(self) -> None:
        """Raises an OpsError if the stream ended in the middle of an event."""
        if self._buffer.strip():
            raise OpsError(f"The stream ended mid-event: {self._buffer[:200]!r}")


def stream_tokens(events: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Passes stream events (TGI's or OpenAI's) on; an error event, in either schema, raises."""
    for event in events:
        if "error" in event:
            kind, message = _error_of(event)
            raise OpsError(f"The model failed mid-stream ({kind}): {message}")
        yield event


def invoke_stream(
    aws: Aws, endpoint_name: str, body: bytes, component: str | None = None
) -> Iterator[dict[str, Any]]:
    """InvokeEndpointWithResponseStream: yields the stream's events (TGI's or OpenAI's chunks) as they come."""
    runtime = aws.client("sagemaker-runtime")
    try:
        response = runtime.invoke_endpoint_with_response_stream(
            **_target(endpoint_name, component),
            Body=body,
            ContentType=CONTENT_TYPE,
            Accept="text/event-stream",
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("ModelError", "ValidationError"):
            raise _runtime_error(exc) from exc
        raise
    yield from stream_tokens(decode_event_stream(response["Body"]))


def decode_event_stream(event_stream: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Decodes botocore's EventStream ({"PayloadPart": {"Bytes"}} or error events) into the JSON events."""
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
