"""Tensor parallelism for serving: one model's weights and KV cache split over the devices of one instance.

Megatron-style, by name: the matrices that fan out (attention's q/k/v projection, the MLP's input and
gate) are split along their output dimension, the ones that fan back in (attention's output
projection, the MLP's output) along their input dimension, so each device computes its heads and its
slice of the MLP and XLA adds one reduction per block; the KV cache is split over its heads. The
embedding and the norms stay whole on every device. A dimension that the device count does not divide
stays whole (correct, only less split). `JAX_LLM_TENSOR_PARALLEL=N` asks for it (serving/settings.py).
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

MODEL_AXIS = "model"
FAN_OUT = ("qkv", "mlp_in", "gate", "up", "query", "key_value")  # split the last (output) dimension
FAN_IN = ("attn.out", "mlp_out", "down")  # split the input dimension (second to last)


def make_mesh(devices: int) -> Mesh:
    """The first `devices` local devices as one `model` axis; raises naming what there is."""
    local = jax.local_devices()
    if not 1 <= devices <= len(local):
        raise ValueError(f"JAX_LLM_TENSOR_PARALLEL={devices}: this instance has {len(local)} device(s)")
    return Mesh(np.array(local[:devices]), (MODEL_AXIS,))


def _split(shape: tuple[int, ...], dim: int, n: int) -> P:
    if len(shape) < 2 or shape[dim] % n:
        return P()
    spec = [None] * len(shape)
    spec[dim] = MODEL_AXIS
    return P(*spec)


def weight_spec(name: str, shape: tuple[int, ...], n: int) -> P:
    """How the weight `name` (its dotted path) of `shape` is split over `n` devices."""
    if name.endswith("kernel") and any(f".{part}." in f".{name}" for part in FAN_OUT):
        return _split(shape, len(shape) - 1, n)
    if name.endswith("kernel") and any(f".{part}." in f".{name}" for part in FAN_IN):
        return _split(shape, len(shape) - 2, n)
    return P()


def shard_params(params, mesh: Mesh):
    """The model's state (nnx.State of arrays) placed over `mesh`, each weight split by `weight_spec`."""
    n = mesh.devices.size

    def place(path, x):
        name = ".".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)
        name = name.removesuffix(".value").removesuffix(".raw_value")
        return jax.device_put(x, NamedSharding(mesh, weight_spec(name, tuple(x.shape), n)))

    return jax.tree_util.tree_map_with_path(place, params)


def cache_sharding(mesh: Mesh, n_heads: int) -> NamedSharding:
    """A layer's keys or values [slots, heads, positions, head_dim], split over the heads."""
    n = mesh.devices.size
    return NamedSharding(mesh, P(None, MODEL_AXIS, None, None) if n_heads % n == 0 else P())


def replicated(mesh: Mesh) -> NamedSharding:
    """Whole on every device of `mesh` (tokens, positions, sampling settings)."""
    return NamedSharding(mesh, P())


def describe(params) -> str:
    """ "N of M weight bytes split (K weights)": how much of the model each device does not hold whole."""
    leaves = jax.tree.leaves(params)
    split = [x for x in leaves if not x.sharding.is_fully_replicated]
    total = sum(x.nbytes for x in leaves)
    split_bytes = sum(x.nbytes for x in split)
    return f"{split_bytes} of {total} weight bytes split ({len(split)} of {len(leaves)} weights)"
