"""`output/failure`: SageMaker shows its first 1024 characters as the job's FailureReason.

So the file starts with what a user needs (error type and message, which names the bad key or
channel) and the traceback, useful but long, comes after.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

FAILURE_REASON_CHARS = 1024  # what SageMaker keeps of the file


def failure_text(error: BaseException, headline: str | None = None) -> str:
    """`Type: message` (after `headline`, a line that explains it, when given), then the full traceback."""
    head = f"{type(error).__name__}: {error}"
    if headline:
        head = f"{headline}\n{head}"
    tail = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    return f"{head}\n\n{tail}"


def write_failure(path: Path, error: BaseException, headline: str | None = None) -> None:
    """Writes the failure file (never raising: a failure while reporting a failure must not hide it)."""
    text = failure_text(error, headline)
    print(text, file=sys.stderr, flush=True)
    try:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError as err:
        print(f"could not write {path}: {err}", file=sys.stderr, flush=True)


def write_message(path: Path, message: str) -> None:
    """Writes a plain message (no traceback), e.g. why a run stopped early."""
    print(message, file=sys.stderr, flush=True)
    try:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(message + "\n")
    except OSError as err:
        print(f"could not write {path}: {err}", file=sys.stderr, flush=True)
