"""The script-mode section: the team's own training script, run by the pipelines instead of the built-in GPT."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from stacks.settings.context import Context
from stacks.settings.tuning import TUNED_HYPERPARAMETERS

REPO = Path(__file__).resolve().parents[2]  # trainingSourceDir is relative to the app's directory
SCRIPT_HYPERPARAMETER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,255}$")


@dataclass(frozen=True)
class ScriptSettings:
    """The team's own training script (script mode), run by the pipelines instead of the built-in GPT."""

    source_dir: str  # trainingSourceDir: its directory, relative to the app's; "" trains the built-in GPT
    entry_point: str  # trainingEntryPoint: the script in it (train.py, a module, or a .sh)
    hyperparameters: dict[str, str]  # trainingScriptHyperparameters: the script's own, JSON-encoded (SDK)
    # trainingScriptTunedNames: the script's names for the tuner's learning_rate, warmup_steps, weight_decay;
    # empty: the tuning pipeline keeps tuning the built-in GPT
    tuned_names: dict[str, str]

    @property
    def enabled(self) -> bool:
        return bool(self.entry_point)

    @property
    def tuned(self) -> bool:
        """Whether the tuning pipeline tunes the script (else it tunes the built-in GPT)."""
        return self.enabled and bool(self.tuned_names)

    @property
    def path(self) -> Path:
        return REPO / self.source_dir

    @classmethod
    def from_context(cls, ctx: Context) -> ScriptSettings:
        """Read the script-mode section: both keys or neither; the entry point must be in the directory."""
        source_dir = ctx.text("trainingSourceDir", allow_empty=True)
        entry_point = ctx.text(
            "trainingEntryPoint",
            re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"),
            "a file name in trainingSourceDir (train.py, a module, or a .sh)",
            allow_empty=True,
        )
        ctx.require(
            bool(source_dir) == bool(entry_point),
            "trainingEntryPoint",
            entry_point,
            "set together with trainingSourceDir (both empty: the built-in GPT trainer)",
        )
        ctx.require(
            not entry_point or (REPO / source_dir).is_dir(),
            "trainingSourceDir",
            source_dir,
            f"a directory relative to {REPO}",
        )
        ctx.require(
            not entry_point.endswith((".py", ".sh")) or (REPO / source_dir / entry_point).is_file(),
            "trainingEntryPoint",
            entry_point,
            f"a file in {REPO / source_dir}",
        )
        raw = ctx.json_value("trainingScriptHyperparameters")
        ctx.require(
            isinstance(raw, dict)
            and len(raw) <= 98
            and all(
                isinstance(k, str)
                and SCRIPT_HYPERPARAMETER_NAME.fullmatch(k)
                and not k.startswith("sagemaker_")
                and isinstance(v, (str, int, float, bool))
                and len(json.dumps(v)) <= 256
                for k, v in raw.items()
            ),
            "trainingScriptHyperparameters",
            raw,
            "a JSON object of at most 98 names (not sagemaker_*) to strings, numbers or booleans",
        )
        names = ctx.json_value("trainingScriptTunedNames")
        ctx.require(
            isinstance(names, dict)
            and all(
                k in TUNED_HYPERPARAMETERS
                and isinstance(v, str)
                and SCRIPT_HYPERPARAMETER_NAME.fullmatch(v)
                and not v.startswith("sagemaker_")
                for k, v in names.items()
            ),
            "trainingScriptTunedNames",
            names,
            f"a JSON object from some of {', '.join(TUNED_HYPERPARAMETERS)} to the script's argument names",
        )
        return cls(source_dir, entry_point, {k: json.dumps(v) for k, v in raw.items()}, dict(names))
