"""FSDP placement: each array split along its largest dimension the device count divides."""

from jax.sharding import PartitionSpec as P

from jax_llm.training.sharding import _fsdp_spec


def test_largest_divisible_dimension_is_sharded():
    assert _fsdp_spec((512, 64), 8) == P("data", None)
    assert _fsdp_spec((64, 3 * 64), 8) == P(None, "data")
    assert _fsdp_spec((6, 5), 4) == P()  # nothing divides: replicated
    assert _fsdp_spec((), 8) == P() and _fsdp_spec((512, 64), 1) == P()
