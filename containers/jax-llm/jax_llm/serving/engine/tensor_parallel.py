"""Tensor parallelism for serving: one model's weights and KV cache split over the devices of one instance.

Megatron-style, by module: the matrices that fan out (attention's fused q/k/v projection, the MLP's input,
or SwiGLU's gate and up) are split along their output dimension, the ones that fan back in (attention's
output projection, the MLP's output) along their input dimension, so each device computes its own heads
and its own slice of the MLP, and XLA adds one all-reduce per attention and one per MLP. For the fused
projection to split on head boundaries, the server loads it grouped per device (`qkv_groups`,
`model/gpt.py`): device i's query, key and value heads side by side. The KV cache is split over its heads.
The embeddings and the norms stay whole on every device. A model whose heads the device count does not
divide is not split (`ServedModel.splits_over`); `plan_serving` (`contract/memory_plan.py`) picks the count.
"""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jax_llm.contract.memory_plan import ServedModel
from jax_llm.model.config import ModelConfig
from jax_llm.model.gpt import GPT

MODEL_AXIS = "model"
FAN_OUT = ("qkv", "mlp_in", "mlp_gate", "mlp_up")  # modules whose kernel splits on its last (output) dim
FAN_IN = ("out", "mlp_out")  # modules whose kernel splits on its input dim (second to last)


def devices_for(count: int) -> list:
    """The first `count` local devices; raises naming how many this instance has."""
    local = jax.local_devices()
    if not 1 <= count <= len(local):
        raise ValueError(f"JAX_LLM_TENSOR_PARALLEL={count}: this instance has {len(local)} device(s)")
    return local[:count]


def make_mesh(devices: int) -> Mesh:
    """The first `devices` local devices as one `model` axis."""
    return Mesh(np.array(devices_for(devices)), (MODEL_AXIS,))


def _module(name: str) -> str | None:
    """The module a kernel belongs to ("blocks.0.attn.qkv.kernel" -> "qkv"); None for other weights."""
    parts = name.split(".")
    return parts[-2] if len(parts) >= 2 and parts[-1] == "kernel" else None


def splits(name: str) -> bool:
    """Whether tensor parallelism splits the weight `name` (its dotted path) at all."""
    return _module(name) in FAN_OUT + FAN_IN


def weight_spec(name: str, shape: tuple[int, ...], n: int) -> P:
    """How the weight `name` of `shape` is split over `n` devices (a dimension `n` does not divide: whole)."""
    module = _module(name)
    dim = len(shape) - 1 if module in FAN_OUT else len(shape) - 2 if module in FAN_IN else None
    if dim is None or len(shape) < 2 or shape[dim] % n:
        return P()
    spec = [None] * len(shape)
    spec[dim] = MODEL_AXIS
    return P(*spec)


def served_model(config: ModelConfig) -> ServedModel:
    """The memory plan's view of `config` as the server holds it (weights and cache in the compute dtype),
    from the model's abstract structure: nothing is allocated."""
    abstract = nnx.state(nnx.eval_shape(lambda: GPT(config, rngs=nnx.Rngs(0))), nnx.Param)
    sizes = {".".join(map(str, path)): var.get_value().size for path, var in nnx.to_flat_state(abstract)}
    dtype_bytes = np.dtype(jax.numpy.dtype(config.compute_dtype)).itemsize
    return ServedModel(
        num_params=sum(sizes.values()),
        whole_params=sum(size for name, size in sizes.items() if not splits(name)),
        n_layers=config.n_layers,
        n_heads=config.n_heads,
        kv_heads=config.kv_heads,
        head_dim=config.head_dim,
        vocab_size=config.vocab_size,
        d_ff=config.d_ff,
        weight_bytes=dtype_bytes,
        cache_bytes=dtype_bytes,
    )


def placer(mesh: Mesh):
    """`place(name, host_array)` for `load_model`: each weight goes straight to its split over `mesh`, one
    device's part per device, so no device ever holds a whole split weight."""
    n = mesh.devices.size

    def place(name: str, value: np.ndarray) -> jax.Array:
        return jax.device_put(value, NamedSharding(mesh, weight_spec(name, value.shape, n)))

    return place


def shard_params(params, mesh: Mesh):
    """The model's state (nnx.State of arrays) placed over `mesh`, each weight split by `weight_spec`
    (a no-op for weights `placer` already put there)."""
    n = mesh.devices.size

    def place(path, x):
        return jax.device_put(x, NamedSharding(mesh, weight_spec(dotted(path), tuple(x.shape), n)))

    return jax.tree_util.tree_map_with_path(place, params)


def dotted(path) -> str:
    """A weight's dotted name ("blocks.0.attn.qkv.kernel") from its key path in an nnx.State."""
    name = ".".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)
    return name.removesuffix(".value").removesuffix(".raw_value")


def cache_sharding(mesh: Mesh, kv_heads: int) -> NamedSharding:
    """A layer's keys or values [slots, kv_heads, positions, head_dim], split over the heads."""
    n = mesh.devices.size
    return NamedSharding(mesh, P(None, MODEL_AXIS, None, None) if kv_heads % n == 0 else P())


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
