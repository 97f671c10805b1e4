"""Typed, validated settings for the CDK app, read from CDK context (defaults live in cdk.json).

``context.py`` is the reader (``Context``, ``SettingsError``); every other module is one section, a frozen
dataclass with a ``from_context`` classmethod; ``Settings.from_context`` builds them all. A wrong value
raises one ``SettingsError`` naming the context key, the value and what is allowed, so ``cdk synth``
stops before any resource is defined.

Adding a section: a module here with a frozen dataclass whose ``from_context(cls, ctx: Context)`` reads
its keys through ``ctx`` (``ctx.text``, ``ctx.integer``, ``ctx.choice``, ``ctx.ml_instance_type``, ...), a
field for it in ``Settings`` and one line in ``Settings.from_context``, and every key defaulted in cdk.json.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stacks.settings.context import Context, SettingsError
from stacks.settings.endpoint import EndpointSettings
from stacks.settings.fit import check_serving_fits, check_training_fits
from stacks.settings.pipeline import PipelineSettings
from stacks.settings.resources import ImageSettings, ProjectSettings, RegistrySettings, StorageSettings
from stacks.settings.script import REPO, ScriptSettings
from stacks.settings.tracking import TrackingSettings
from stacks.settings.tuning import TUNED_HYPERPARAMETERS, TuningSettings

# Keys an earlier version read, and what replaced them: a value left in cdk.json, cdk.context.json or on the
# command line would otherwise be ignored without a word.
RETIRED_KEYS = {
    "ecrMaxImageCount": "ecrUntaggedImageDays (only untagged images expire; a tagged one may be deployed)",
    "endpointTargetInvocationsPerInstance": "endpointTargetConcurrencyPercent (autoscaling tracks concurrency)",
    # Warm pools are documented for training jobs (and never with spot); a tuning job's service drops the
    # trial definition's KeepAlivePeriodInSeconds. docs/stacks.md, "Tuning and warm pools".
    "tuningWarmPoolSeconds": "no other key: a tuning job's trials keep no SageMaker warm pool (docs/stacks.md)",
}

__all__ = [
    "RETIRED_KEYS",
    "REPO",
    "TUNED_HYPERPARAMETERS",
    "Context",
    "EndpointSettings",
    "ImageSettings",
    "PipelineSettings",
    "ProjectSettings",
    "RegistrySettings",
    "ScriptSettings",
    "Settings",
    "SettingsError",
    "StorageSettings",
    "TrackingSettings",
    "TuningSettings",
]


@dataclass(frozen=True)
class Settings:
    """Every setting of the app, one section per concern."""

    project: ProjectSettings
    image: ImageSettings
    storage: StorageSettings
    registry: RegistrySettings
    pipeline: PipelineSettings
    script: ScriptSettings
    tuning: TuningSettings
    endpoint: EndpointSettings
    tracking: TrackingSettings

    @classmethod
    def from_context(cls, source: Any) -> Settings:
        """Read and validate all sections from a construct's context or a plain mapping."""
        ctx = Context.of(source)
        for key, instead in RETIRED_KEYS.items():
            ctx.retired(key, instead)
        settings = cls(
            project=ProjectSettings.from_context(ctx),
            image=ImageSettings.from_context(ctx),
            storage=StorageSettings.from_context(ctx),
            registry=RegistrySettings.from_context(ctx),
            pipeline=(pipeline := PipelineSettings.from_context(ctx)),
            script=ScriptSettings.from_context(ctx),
            tuning=TuningSettings.from_context(ctx, pipeline),
            endpoint=EndpointSettings.from_context(ctx, pipeline),
            tracking=TrackingSettings.from_context(ctx),
        )
        if not settings.script.enabled:  # the team's own train.py: its model's size is unknown here
            check_training_fits(settings.pipeline)
            check_serving_fits(settings.pipeline, settings.endpoint)
        return settings
