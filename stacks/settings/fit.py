"""Does it fit? Synth stops on a training or endpoint setting whose GPUs cannot hold the model.

The bytes come from the checked-in memory plan (`jax_llm/contract/memory_plan.json`, made from XLA's
memory analysis of the real train step; `python -m jax_llm plan` prints the detail). Instance types
the plan's table does not list, presets it has no row for, and script mode (the team's own train.py)
are not checked: nothing is known about them.
"""

from __future__ import annotations

from jax_llm.contract.hyperparameters import mesh_shape, parse_hyperparameters
from jax_llm.contract.instances import instance_type
from jax_llm.contract.memory_plan import (
    SERVING_SHARDS_OVER_GPUS,
    gib,
    grad_accum_that_fits,
    largest_rows_per_device,
    serving_need,
    table,
    training_need,
    usable_bytes,
)
from stacks.settings.context import SettingsError
from stacks.settings.endpoint import EndpointSettings
from stacks.settings.pipeline import PipelineSettings


def check_training_fits(pipeline: PipelineSettings) -> None:
    """Raises SettingsError on trainingInstanceType when a GPU cannot hold one micro-batch's step."""
    instance = instance_type(pipeline.instance_type)
    config = parse_hyperparameters(pipeline.hyperparameters)
    if instance is None:
        return
    try:
        data, fsdp = mesh_shape(config.mesh, pipeline.instance_count, instance.gpus)
    except ValueError as error:
        raise SettingsError(
            "trainingHyperparameters",
            {"mesh": config.mesh},
            f"a mesh for {pipeline.instance_count} x {instance.name}: {error}",
        ) from None
    devices = data * fsdp
    if config.micro_batch_size % devices:
        raise SettingsError(
            "trainingHyperparameters",
            {"batch_size": config.batch_size},
            f"batch_size / grad_accum_steps ({config.micro_batch_size}) a multiple of the "
            f"{devices} GPUs of {pipeline.instance_count} x {instance.name}",
        )
    if config.preset not in table()["presets"]:
        return
    rows = config.micro_batch_size // devices
    need = training_need(config.preset, config.seq_len, config.remat, fsdp, rows, config.fsdp)
    usable = usable_bytes(instance)
    if need.total > usable:
        most = largest_rows_per_device(
            config.preset, config.seq_len, config.remat, fsdp, instance, config.fsdp
        )
        savers = [s for s, on in (("remat=true", config.remat), ("fsdp=true", config.fsdp)) if not on]
        accum = grad_accum_that_fits(config.batch_size, devices, most)
        hint = (
            f"grad_accum_steps={accum} fits (at most {most} sequence(s) per GPU do)"
            if accum
            else f"at most {most} sequence(s) per GPU fit"
            if most
            else "not even one sequence per GPU fits: "
            + ", ".join(savers + ["more GPUs (trainingInstanceCount)", "GPUs with more memory"])
        )
        raise SettingsError(
            "trainingInstanceType",
            pipeline.instance_type,
            (
                f"an instance whose GPUs hold preset {config.preset} at {rows} sequence(s) of {config.seq_len} "
                f"tokens per GPU (remat={config.remat}, fsdp={config.fsdp}, mesh {data}x{fsdp}): that needs "
                f"{need.describe()}, but a {instance.gpu.name} has {gib(usable)} usable; {hint} "
                f"(python -m jax_llm plan prints the detail)"
            ),
        )


def check_serving_fits(pipeline: PipelineSettings, endpoint: EndpointSettings) -> None:
    """Raises SettingsError on endpointInstanceType when its GPU(s) cannot hold the model and its KV cache."""
    instance = instance_type(endpoint.instance_type)
    config = parse_hyperparameters(pipeline.hyperparameters)
    if instance is None or config.preset not in table()["presets"]:
        return
    shards = instance.gpus if SERVING_SHARDS_OVER_GPUS else 1
    need = serving_need(config.preset, config.seq_len, endpoint.effective_decode_slots, shards)
    usable = usable_bytes(instance)
    if need.total > usable:
        raise SettingsError(
            "endpointInstanceType",
            endpoint.instance_type,
            (
                f"an instance whose GPU holds preset {config.preset} with "
                f"{endpoint.effective_decode_slots} decode slots of "
                f"{config.seq_len} tokens: that needs {need.describe()}, but a {instance.gpu.name} has "
                f"{gib(usable)} usable (fewer endpointDecodeSlots shrink the KV cache)"
            ),
        )
