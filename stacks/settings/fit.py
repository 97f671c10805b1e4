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
    DoesNotFit,
    ServedModel,
    gib,
    grad_accum_that_fits,
    largest_rows_per_device,
    plan_serving,
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
    """Raises SettingsError when the server (`plan_serving`, as it decides at start) cannot hold the model and
    every decode slot's KV cache on the GPUs it gets: the instance's, or one copy's in inference-components
    mode."""
    instance = instance_type(endpoint.instance_type)
    config = parse_hyperparameters(pipeline.hyperparameters)
    if instance is None or config.preset not in table()["presets"]:
        return
    if endpoint.inference_components:
        if not 1 <= endpoint.copy_accelerators <= instance.gpus:
            raise SettingsError(
                "endpointCopyAccelerators",
                endpoint.copy_accelerators,
                f"between 1 and the {instance.gpus} GPU(s) of a {instance.name}",
            )
        gpus, where = endpoint.copy_accelerators, f"the {endpoint.copy_accelerators} GPU(s) one copy reserves"
    else:
        gpus, where = instance.gpus, f"the {instance.gpus} GPU(s) of a {instance.name}"
    if endpoint.tensor_parallel > gpus:
        raise SettingsError("endpointTensorParallel", endpoint.tensor_parallel, f"at most {gpus}: {where}")
    # The server computes in the exported model's dtype: bfloat16 unless training asked for float32.
    served = ServedModel.from_table(config.preset, 4 if config.compute_dtype == "float32" else 2)
    slots = endpoint.effective_decode_slots
    try:
        split = plan_serving(
            served, config.seq_len, slots, gpus, usable_bytes(instance), endpoint.tensor_parallel or None
        )
        problem = f"{split.slots} fit beside the weights over {split.shards} GPU(s): {split.need.describe()}"
    except DoesNotFit as error:
        split, problem = None, str(error)
    if split is None or split.slots < slots:
        more_gpus = endpoint.inference_components and gpus < instance.gpus
        raise SettingsError(
            "endpointCopyAccelerators" if more_gpus else "endpointInstanceType",
            endpoint.copy_accelerators if more_gpus else endpoint.instance_type,
            (
                f"GPUs that hold preset {config.preset} with {slots} decode slots of {config.seq_len} tokens on "
                f"{where}, split as the server splits it: {problem} (fewer endpointDecodeSlots shrink the KV "
                "cache; python -m jax_llm plan prints the detail)"
            ),
        )
