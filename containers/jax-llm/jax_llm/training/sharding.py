"""Where arrays live: one 1-D mesh over every device of every host, the batch split across it.

Data parallelism shards the batch's rows over the `data` axis. With `fsdp`, each parameter and its
optimizer moments are split along their largest dimension that the device count divides (ZeRO-3 /
FSDP style); XLA inserts the all-gathers before use and reduce-scatters of the gradients. Without
it, parameters and optimizer state are replicated and gradients are all-reduced.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def make_mesh() -> Mesh:
    """All devices of all processes, in `jax.devices()` order (process by process)."""
    return Mesh(np.array(jax.devices()), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Rows over the data axis: [batch, tokens]."""
    return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """A whole copy on every device (scalars, metrics, parameters without FSDP)."""
    return NamedSharding(mesh, P())


def _fsdp_spec(shape: tuple[int, ...], n_devices: int) -> P:
    """Shards the largest dimension that `n_devices` divides; small or indivisible arrays stay whole."""
    if n_devices == 1 or not shape:
        return P()
    for dim in sorted(range(len(shape)), key=lambda d: -shape[d]):
        if shape[dim] % n_devices == 0:
            return P(*[DATA_AXIS if d == dim else None for d in range(len(shape))])
    return P()


def state_shardings(abstract_state, mesh: Mesh, fsdp: bool):
    """A sharding for every leaf of a (model, optimizer) state tree of ShapeDtypeStructs."""
    n = mesh.devices.size

    def leaf(x):
        return NamedSharding(mesh, _fsdp_spec(tuple(x.shape), n) if fsdp else P())

    return jax.tree.map(leaf, abstract_state)


def global_batch(local_rows: np.ndarray, sharding: NamedSharding, global_rows: int) -> jax.Array:
    """This process's rows [global_rows / processes, T] become its shards of one [global_rows, T] array."""
    return jax.make_array_from_process_local_data(sharding, local_rows, (global_rows, *local_rows.shape[1:]))
