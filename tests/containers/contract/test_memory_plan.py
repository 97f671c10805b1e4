"""The serving half of the memory plan: how many GPUs a server splits a model over, and how many decode slots
its KV cache gets from what the weights leave (`plan_serving`, the one rule the server and synth share)."""

from __future__ import annotations

import pytest

from jax_llm.contract.memory_plan import GIB, DoesNotFit, ServedModel, plan_serving

# A 7b-shaped model (32 heads, 8 key/value heads), 1 GiB of weights that stay whole, bf16.
MODEL = ServedModel(
    num_params=7 * GIB // 2,
    whole_params=GIB // 2,
    n_layers=32,
    n_heads=32,
    kv_heads=8,
    head_dim=128,
    vocab_size=32000,
    d_ff=11008,
)
CONTEXT = 4096


def test_a_slot_s_cache_and_the_weights_split_over_the_heads():
    assert MODEL.slot_bytes(CONTEXT) == CONTEXT * 2 * 32 * 8 * 128 * 2  # k and v, every layer, bf16
    assert MODEL.slot_bytes(CONTEXT, 4) == MODEL.slot_bytes(CONTEXT) // 4
    one, four = MODEL.need(CONTEXT, 8, 1, 0), MODEL.need(CONTEXT, 8, 4, 0)
    assert one.weights == 7 * GIB and four.weights == GIB + 6 * GIB // 4  # the whole part is on every GPU
    assert four.kv_cache == one.kv_cache // 4


def test_the_fewest_gpus_that_hold_every_slot_are_chosen():
    slots = 16
    usable = MODEL.need(CONTEXT, slots, 2).total  # just enough on 2 GPUs, not on 1
    split = plan_serving(MODEL, CONTEXT, slots, devices=8, usable=usable)
    assert (split.shards, split.slots) == (2, slots)
    assert plan_serving(MODEL, CONTEXT, slots, devices=8, usable=10 * usable).shards == 1


def test_the_kv_cache_gets_what_the_weights_leave_when_not_every_slot_fits():
    usable = MODEL.need(CONTEXT, 5, 4).total + MODEL.slot_bytes(CONTEXT, 4) - 1  # 5 slots and not quite 6
    split = plan_serving(MODEL, CONTEXT, 32, devices=4, usable=usable)
    assert (split.shards, split.slots) == (4, 5)  # all the GPUs there are, and the slots that fit
    assert split.need.total <= usable


def test_a_count_that_does_not_split_whole_heads_is_never_chosen():
    model = ServedModel(**{**MODEL.__dict__, "n_heads": 12, "kv_heads": 12})  # 12 heads: not 8 ways
    usable = model.need(CONTEXT, 2, 4).total
    assert not model.splits_over(8) and model.splits_over(4)
    split = plan_serving(model, CONTEXT, 8, devices=8, usable=usable)
    assert (split.shards, split.slots) == (4, 2)


def test_an_asked_for_split_is_kept_and_too_little_memory_names_the_bytes():
    usable = MODEL.need(CONTEXT, 4, 1).total
    assert plan_serving(MODEL, CONTEXT, 4, devices=8, usable=usable, tensor_parallel=4).shards == 4
    with pytest.raises(DoesNotFit) as raised:
        plan_serving(MODEL, CONTEXT, 4, devices=2, usable=3 * GIB)
    said = str(raised.value)
    assert "over 2 GPU(s)" in said and "weights 4.0 GiB" in said and "3.0 GiB usable" in said
