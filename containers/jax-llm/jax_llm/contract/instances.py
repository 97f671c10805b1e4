"""The GPUs of the SageMaker instance types this project trains and serves on: count and memory each.

One table for the memory plan (`jax_llm plan`), the stacks' fit checks and the default mesh's docs.
Memory is what the NVIDIA driver reports as the device's total (nvidia-smi's MiB), not the marketing
figure: an "80 GB" A100 has 81920 MiB, an H100 SXM 81559 MiB, an H200 143771 MiB. Stdlib only.
"""

from __future__ import annotations

import dataclasses

MIB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Gpu:
    """One accelerator model."""

    name: str
    memory_bytes: int


A10G = Gpu("NVIDIA A10G 24 GB", 23028 * MIB)
L4 = Gpu("NVIDIA L4 24 GB", 23034 * MIB)
L40S = Gpu("NVIDIA L40S 48 GB", 46068 * MIB)
A100_40 = Gpu("NVIDIA A100 40 GB", 40960 * MIB)
A100_80 = Gpu("NVIDIA A100 80 GB", 81920 * MIB)
H100 = Gpu("NVIDIA H100 80 GB", 81559 * MIB)
H200 = Gpu("NVIDIA H200 141 GB", 143771 * MIB)


@dataclasses.dataclass(frozen=True)
class InstanceType:
    """A SageMaker instance type's GPUs: `gpus` of `gpu` each."""

    name: str
    gpus: int
    gpu: Gpu

    @property
    def gpu_memory_bytes(self) -> int:
        return self.gpu.memory_bytes


def _family(prefix: str, gpu: Gpu, sizes: dict[str, int]) -> dict[str, InstanceType]:
    return {f"ml.{prefix}.{size}": InstanceType(f"ml.{prefix}.{size}", n, gpu) for size, n in sizes.items()}


_SINGLE = {"xlarge": 1, "2xlarge": 1, "4xlarge": 1, "8xlarge": 1, "16xlarge": 1}
INSTANCE_TYPES: dict[str, InstanceType] = {
    **_family("g5", A10G, {**_SINGLE, "12xlarge": 4, "24xlarge": 4, "48xlarge": 8}),
    **_family("g6", L4, {**_SINGLE, "12xlarge": 4, "24xlarge": 4, "48xlarge": 8}),
    **_family("g6e", L40S, {**_SINGLE, "12xlarge": 4, "24xlarge": 4, "48xlarge": 8}),
    "ml.p4d.24xlarge": InstanceType("ml.p4d.24xlarge", 8, A100_40),
    "ml.p4de.24xlarge": InstanceType("ml.p4de.24xlarge", 8, A100_80),
    "ml.p5.48xlarge": InstanceType("ml.p5.48xlarge", 8, H100),
    "ml.p5e.48xlarge": InstanceType("ml.p5e.48xlarge", 8, H200),
    "ml.p5en.48xlarge": InstanceType("ml.p5en.48xlarge", 8, H200),
}


def instance_type(name: str) -> InstanceType | None:
    """The table's entry for a SageMaker instance type, or None (a CPU type, or one not listed)."""
    return INSTANCE_TYPES.get(name)
