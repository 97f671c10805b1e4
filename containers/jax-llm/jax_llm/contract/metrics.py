"""The training log format: one module defines the metric lines and the regexes SageMaker reads them with.

A train line, every `log_every` steps:
    step 120/5000 (2.4%) train_loss=3.4521 learning_rate=5.900e-04 tokens_per_sec=51234.0 mfu=0.4312 \
        elapsed=0:02:01 eta=1:22:10   (one line)
An evaluation line:
    step 500/5000 (10.0%) val_loss=3.2100
`mfu` is `n/a` where the device's peak is unknown; the regex then does not match and SageMaker
records nothing rather than a wrong value. Stdlib only: the CDK stack imports this module.
"""

from __future__ import annotations

import math
import re

METRIC_NAMES = ("train_loss", "val_loss", "learning_rate", "tokens_per_sec", "mfu")
OBJECTIVE_METRIC = "val_loss"  # what the tuner minimises and the pipeline's registration gate reads

# A decimal or scientific float; the first capture group is the value (SageMaker's rule).
_NUMBER = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"

# `\b` keeps a name from matching inside a longer one (no lookbehind: keep to what every regex engine has).
METRIC_DEFINITIONS: list[dict[str, str]] = [
    {"Name": name, "Regex": rf"\b{name}={_NUMBER}"} for name in METRIC_NAMES
]


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "n/a"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _progress(step: int, max_steps: int) -> str:
    return f"step {step}/{max_steps} ({100.0 * step / max_steps:.1f}%)"


def format_train_line(
    step: int,
    max_steps: int,
    *,
    train_loss: float,
    learning_rate: float,
    tokens_per_sec: float,
    mfu: float | None,
    elapsed_s: float,
    eta_s: float,
) -> str:
    """One train-metrics line; `mfu=None` prints `n/a` (peak unknown)."""
    mfu_text = "n/a" if mfu is None else f"{mfu:.4f}"
    return (
        f"{_progress(step, max_steps)} train_loss={train_loss:.4f} learning_rate={learning_rate:.3e} "
        f"tokens_per_sec={tokens_per_sec:.1f} mfu={mfu_text} elapsed={_duration(elapsed_s)} "
        f"eta={_duration(eta_s)}"
    )


def format_eval_line(step: int, max_steps: int, *, val_loss: float) -> str:
    """One evaluation line."""
    return f"{_progress(step, max_steps)} val_loss={val_loss:.4f}"


def parse_metrics(text: str) -> dict[str, list[float]]:
    """Applies METRIC_DEFINITIONS to log text as SageMaker does: every match's first group, in order."""
    return {d["Name"]: [float(m.group(1)) for m in re.finditer(d["Regex"], text)] for d in METRIC_DEFINITIONS}
