"""Where arrays live: a 2-D (data, fsdp) mesh over every device of every host (hybrid sharding).

The batch's rows are split over both axes: every device gets its own rows. With `fsdp`, each
parameter and its optimizer moments are split over the `fsdp` axis along one dimension (ZeRO-3 /
FSDP style) and copied along `data`; XLA all-gathers a weight over `fsdp` before use and
reduce-scatters its gradient over `fsdp`, then all-reduces the shard over `data`. Without it,
parameters and optimizer state are replicated and gradients are all-reduced over every device.

The default shape keeps `fsdp` inside a host (the GPUs of one instance, on NVLink) and `data` across
hosts (EFA), so the per-step all-gathers of weights never leave the host: 4 x p4de is 4 x 8. A host
with one device gets a flat `fsdp` over all hosts instead (nothing to shard inside it). The rule and
the `mesh` hyperparameter's parsing live in `contract.hyperparameters` (the stacks use them too).

Which dimension of a weight is split: the largest one the `fsdp` size divides, never the leading
[n_layers] axis of a scanned model's stacked weights (a scan step needs its whole layer on the host).
`describe_shardings` lists the choice for every weight (docs/scale.md shows it for 7b).
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jax_llm.contract.hyperparameters import default_mesh_shape, mesh_shape  # noqa: F401 (re-exported)

DATA_AXIS = "data"
FSDP_AXIS = "fsdp"
BATCH_AXES = (DATA_AXIS, FSDP_AXIS)  # the batch's rows are split over every device
STACKED = "layers"  # a scanned model's stacked block: its weights' dim 0 is the layer


def make_mesh(shape: tuple[int, int] | None = None, devices=None) -> Mesh:
    """A (data, fsdp) mesh over `devices` (default all, in `jax.devices()` order: process by process, so a
    row of `fsdp` devices is one host's when fsdp = devices per host). shape: default `default_mesh_shape`."""
    devices = list(jax.devices() if devices is None else devices)
    if shape is None:
        processes = len({d.process_index for d in devices})
        shape = default_mesh_shape(processes, len(devices) // processes)
    return Mesh(np.array(devices).reshape(shape), (DATA_AXIS, FSDP_AXIS))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Rows over every device (data-major, then fsdp): [batch, tokens]."""
    return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    """A whole copy on every device (scalars, metrics, parameters without FSDP)."""
    return NamedSharding(mesh, P())


def _fsdp_spec(
    shape: tuple[int, ...], n_devices: int, skip_leading: bool = False, axis: str = FSDP_AXIS
) -> P:
    """Shards the largest dimension that `n_devices` divides; small or indivisible arrays stay whole.

    skip_leading: never dim 0 (a scanned model's layer axis).
    """
    if n_devices == 1 or not shape:
        return P()
    candidates = range(1 if skip_leading else 0, len(shape))
    for dim in sorted(candidates, key=lambda d: -shape[d]):
        if shape[dim] % n_devices == 0:
            return P(*[axis if d == dim else None for d in range(len(shape))])
    return P()


def _is_stacked(path) -> bool:
    return any(getattr(key, "key", getattr(key, "name", None)) == STACKED for key in path)


def state_shardings(abstract_state, mesh: Mesh, fsdp: bool):
    """A sharding for every leaf of a (model, optimizer) state tree of ShapeDtypeStructs."""
    n = mesh.shape.get(FSDP_AXIS, mesh.devices.size)

    def leaf(path, x):
        spec = _fsdp_spec(tuple(x.shape), n, _is_stacked(path)) if fsdp else P()
        return NamedSharding(mesh, spec)

    return jax.tree_util.tree_map_with_path(leaf, abstract_state)


def describe_shardings(abstract_params, fsdp_size: int) -> list[tuple[str, tuple[int, ...], P]]:
    """(dotted path, shape, spec) of every parameter, with `fsdp` devices: the table docs/scale.md shows."""
    rows = []
    for path, x in jax.tree_util.tree_leaves_with_path(abstract_params):
        names = [str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path]
        names = [n for n in names if n not in ("value", "raw_value")]
        spec = _fsdp_spec(tuple(x.shape), fsdp_size, _is_stacked(path))
        rows.append((".".join(names), tuple(x.shape), spec))
    return rows


def global_batch(local_rows: np.ndarray, sharding: NamedSharding, global_rows: int) -> jax.Array:
    """This process's rows [global_rows / processes, T] become its shards of one [global_rows, T] array."""
    return jax.make_array_from_process_local_data(sharding, local_rows, (global_rows, *local_rows.shape[1:]))
