"""The per-device peak matmul rate MFU is measured against: a datasheet table on GPUs, measured on CPU."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp

# Dense (no sparsity) bf16 tensor-core FLOP/s per device, from NVIDIA's datasheets. Matched in order
# against `device.device_kind` (e.g. "NVIDIA H100 80GB HBM3"), so the more specific names come first.
GPU_BF16_PEAK: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756e12),
    ("H100", 989e12),  # SXM
    ("H200", 989e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("L4", 121e12),
)


def table_peak(device_kind: str, compute_dtype: str) -> float | None:
    """The datasheet peak for a GPU at bf16; None when unknown (MFU is then reported as n/a)."""
    if compute_dtype != "bfloat16":
        return None  # fp32 on GPU runs as TF32 or not, depending on precision flags: no honest single peak
    for name, flops in GPU_BF16_PEAK:
        if name in device_kind:
            return flops
    return None


def measure_matmul_peak(dtype: str = "float32", n: int = 1024, repeats: int = 5) -> float:
    """FLOP/s of the best of `repeats` jitted [n, n] x [n, n] matmuls on the default device."""
    a = jnp.ones((n, n), dtype)
    b = jnp.ones((n, n), dtype)
    matmul = jax.jit(lambda x, y: x @ y)
    matmul(a, b).block_until_ready()  # compile
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def device_peak(compute_dtype: str) -> tuple[float | None, str]:
    """(peak FLOP/s of one device, where it came from)."""
    device = jax.devices()[0]
    if device.platform == "cpu":
        return measure_matmul_peak("float32"), "measured f32 matmul"
    peak = table_peak(device.device_kind, compute_dtype)
    return peak, (f"datasheet {device.device_kind}" if peak else f"unknown for {device.device_kind}")
