"""The tuning section: job limits and the search ranges, bounded by the trainer's own hyperparameter table."""

from __future__ import annotations

from dataclasses import dataclass

from jax_llm.contract.hyperparameters import FIELDS
from stacks.settings.context import Context
from stacks.settings.pipeline import PipelineSettings

TUNED_HYPERPARAMETERS = ("learning_rate", "warmup_steps", "weight_decay")  # what the tuner searches


@dataclass(frozen=True)
class TuningSettings:
    """The tuning pipeline: job limits and the search ranges of learning rate, warmup and weight decay."""

    max_jobs: int  # tuningMaxJobs: training jobs in all
    max_parallel_jobs: int  # tuningMaxParallelJobs: jobs at once (each on trainingInstanceCount hosts)
    learning_rate: tuple[float, float]  # tuningLearningRateRange: searched on a log scale
    warmup_steps: tuple[int, int]  # tuningWarmupStepsRange
    weight_decay: tuple[float, float]  # tuningWeightDecayRange

    @classmethod
    def from_context(cls, ctx: Context, pipeline: PipelineSettings) -> TuningSettings:
        """Read the tuning section; each range lies within the trainer's own bounds for that hyperparameter
        (``jax_llm.contract.hyperparameters``) and warmup within max_steps."""
        settings = cls(
            max_jobs=ctx.integer("tuningMaxJobs", minimum=1, maximum=750),
            max_parallel_jobs=ctx.integer("tuningMaxParallelJobs", minimum=1, maximum=100),
            learning_rate=_trainer_range(ctx, "tuningLearningRateRange", "learning_rate"),
            warmup_steps=_trainer_range(ctx, "tuningWarmupStepsRange", "warmup_steps"),
            weight_decay=_trainer_range(ctx, "tuningWeightDecayRange", "weight_decay"),
        )
        ctx.require(
            settings.max_parallel_jobs <= settings.max_jobs,
            "tuningMaxParallelJobs",
            settings.max_parallel_jobs,
            f"at most tuningMaxJobs ({settings.max_jobs})",
        )
        # A logarithmic search cannot start at 0.
        ctx.require(
            settings.learning_rate[0] > 0,
            "tuningLearningRateRange",
            list(settings.learning_rate),
            "a range above 0 (the learning rate is searched on a log scale)",
        )
        max_steps = int(pipeline.hyperparameters["max_steps"])
        ctx.require(
            settings.warmup_steps[1] <= max_steps,
            "tuningWarmupStepsRange",
            list(settings.warmup_steps),
            f"a range within [0, max_steps={max_steps}] (the trainer rejects warmup above max_steps)",
        )
        return settings


def _trainer_range(ctx: Context, key: str, name: str) -> tuple[float, float]:
    """The [low, high] context value ``key`` within the trainer's own bounds of hyperparameter ``name``."""
    field = FIELDS[name]
    return ctx.number_range(
        key, minimum=field.metadata["minimum"], maximum=field.metadata["maximum"], integer=field.type == "int"
    )
