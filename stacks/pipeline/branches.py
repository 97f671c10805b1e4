"""The run-time switches every pipeline starts with: prepare the data or not, spot or on-demand.

Both are pipeline parameters, and neither can be a field's value: a skipped step cannot feed the
steps after it, and SageMaker rejects MaxWaitTimeInSeconds when managed spot is off. So each
combination gets its own copy of the job steps, built by the same function and named by a suffix
(step names are unique in a pipeline):

    CheckPrepareData ─ true ─> Prepare
                    │          CheckUseSpotFromRaw ─ true ─> CheckMaxWaitFromRaw ─> chain(Spot, FromRaw)
                    │                              └ false ─> chain(OnDemand, FromRaw)
                    └ false ─> CheckUseSpotFromTokenized ─ ... the same, on the tokenized-data parameters
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from stacks.pipeline import parameters as p
from stacks.pipeline.expressions import condition, parameter
from stacks.pipeline.resources import PipelineResources
from stacks.pipeline.steps import fail_step, prepare_step
from stacks.settings import PipelineSettings


@dataclass(frozen=True)
class Variant:
    """One path through the switches: where the data comes from and whether the jobs run on spot."""

    prepared: bool  # the channels are this run's Prepare outputs (else the tokenized-data parameters)
    spot: bool  # managed spot with a wait limit (else on-demand)

    @property
    def data(self) -> str:
        """The suffix naming the data source."""
        return "FromRaw" if self.prepared else "FromTokenized"

    @property
    def suffix(self) -> str:
        """The suffix of this variant's step names."""
        return ("Spot" if self.spot else "OnDemand") + self.data


def _condition_step(name: str, conditions: list[dict], if_steps: list[dict], else_steps: list[dict]) -> dict:
    return {
        "Name": name,
        "Type": "Condition",
        "Arguments": {"Conditions": conditions, "IfSteps": if_steps, "ElseSteps": else_steps},
    }


def _spot_switch(prepared: bool, chain: Callable[[Variant], list[dict]]) -> dict:
    """UseSpotInstances: spot (after checking the wait limit, which SageMaker would reject only after
    requesting instances) or on-demand."""
    spot, on_demand = Variant(prepared, True), Variant(prepared, False)
    wait_checked = _condition_step(
        f"CheckMaxWait{spot.data}",
        [condition("GreaterThan", parameter(p.MAX_WAIT), parameter(p.MAX_RUNTIME))],
        chain(spot),
        [
            fail_step(
                f"MaxWaitNotAboveMaxRuntime{spot.data}",
                [
                    "Managed spot training needs MaxWaitSeconds (",
                    parameter(p.MAX_WAIT),
                    ") above MaxRuntimeSeconds (",
                    parameter(p.MAX_RUNTIME),
                    ").",
                ],
            )
        ],
    )
    return _condition_step(
        f"CheckUseSpot{spot.data}",
        [condition("Equals", parameter(p.USE_SPOT), True)],
        [wait_checked],
        chain(on_demand),
    )


def run_time_switches(
    res: PipelineResources, pipeline: PipelineSettings, chain: Callable[[Variant], list[dict]]
) -> list[dict]:
    """The pipeline's top-level steps: the switches, Prepare, and ``chain(variant)`` for each variant."""
    return [
        _condition_step(
            "CheckPrepareData",
            [condition("Equals", parameter(p.PREPARE_DATA), True)],
            [prepare_step(res, pipeline), _spot_switch(True, chain)],
            [_spot_switch(False, chain)],
        )
    ]
