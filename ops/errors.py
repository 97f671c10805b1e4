"""The one exception the ops CLI reports to the user, and the translation of AWS client errors into it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
)

# ClientError codes that mean "your credentials are wrong or stale", not "the resource is wrong".
_CREDENTIAL_CODES = frozenset(
    {
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "InvalidSignatureException",
        "AuthFailure",
    }
)

CREDENTIALS_HELP = (
    "configure credentials with `aws configure` or `aws sso login`, or set AWS_PROFILE "
    "(or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
)


class OpsError(Exception):
    """A failure the user can act on; the CLI prints its message and exits with `exit_code`."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


def is_not_found(exc: ClientError) -> bool:
    """True when a ClientError says the resource does not exist (SageMaker and CloudFormation phrasings)."""
    error = exc.response.get("Error", {})
    message = error.get("Message", "").lower()
    return error.get("Code") in ("ResourceNotFound", "ValidationException", "ValidationError") and any(
        phrase in message for phrase in ("not found", "does not exist", "could not find")
    )


@contextlib.contextmanager
def not_found_as(message: str) -> Iterator[None]:
    """Inside it, a ClientError saying the resource does not exist becomes OpsError(message); others pass."""
    try:
        yield
    except ClientError as exc:
        if not is_not_found(exc):
            raise
        raise OpsError(message) from exc


def translate(exc: Exception) -> OpsError | None:
    """Maps a botocore exception to an OpsError with a clear message, or None when it is not an AWS error."""
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return OpsError(f"No usable AWS credentials: {CREDENTIALS_HELP}.", exit_code=2)
    if isinstance(exc, ProfileNotFound):
        return OpsError(f"{exc}: pick a profile from ~/.aws/config or unset AWS_PROFILE.", exit_code=2)
    if isinstance(exc, NoRegionError):
        return OpsError(
            "No AWS region: pass --region or set AWS_REGION (or AWS_DEFAULT_REGION, or a profile region).",
            exit_code=2,
        )
    if isinstance(exc, EndpointConnectionError):
        return OpsError(f"Cannot reach AWS: {exc}", exit_code=3)
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code, message = error.get("Code", "Unknown"), error.get("Message", str(exc))
        if code in _CREDENTIAL_CODES:
            return OpsError(
                f"AWS rejected the credentials ({code}: {message}): {CREDENTIALS_HELP}.", exit_code=2
            )
        if code in ("AccessDenied", "AccessDeniedException"):
            return OpsError(f"Access denied ({exc.operation_name}): {message}", exit_code=2)
        return OpsError(f"{exc.operation_name} failed ({code}): {message}")
    return None
