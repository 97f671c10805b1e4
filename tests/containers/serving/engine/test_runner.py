"""The runner's cached prefill/decode against the model's plain full-sequence forward pass."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jax_llm.serving.engine.runner import ModelRunner, SlotParams
from jax_llm.serving.engine.sampling import seed_key_data


def _reference_greedy(model, prompt: list[int], steps: int) -> tuple[list[int], list[float]]:
    """Greedy decoding the slow way: the whole sequence through the model, no cache, every step.

    The sequence is zero-padded to the context so one compiled program serves every step; attention
    is causal, so the padding after the last real token changes nothing before it.
    """
    forward = nnx.jit(lambda m, t: m(t)[0])
    tokens, logprobs = list(prompt), []
    for _ in range(steps):
        padded = np.zeros((1, model.config.max_seq_len), np.int32)
        padded[0, : len(tokens)] = tokens
        last = jax.nn.log_softmax(forward(model, padded)[0, len(tokens) - 1])
        tokens.append(int(jnp.argmax(last)))
        logprobs.append(float(last[tokens[-1]]))
    return tokens[len(prompt) :], logprobs


def test_bucket_is_the_smallest_that_fits(runner):
    assert runner.buckets[-1] == runner.config.max_seq_len
    assert runner.bucket(1) == runner.buckets[0]
    assert runner.bucket(runner.buckets[0]) == runner.buckets[0]
    assert runner.bucket(runner.buckets[0] + 1) == runner.buckets[1]


def test_batch_buckets_double_up_to_the_slot_count(runner):
    assert runner.batch_buckets == [1, 2, 4]
    assert runner.prefill_buckets == [1, 2, 4]  # the default cap of 8 is past the 4 slots


@pytest.mark.parametrize("slots", [(0, 1), (1, 3)])  # a batch bucket of 2 (cache sliced), then all 4 slots
def test_rows_at_different_positions_decode_as_the_full_forward_pass(
    runner, tiny_model, tiny_tokenizer, slots
):
    """Two prompts of different lengths (different buckets, padding) in two slots, decoded together."""
    short, long = slots
    prompts = {
        short: tiny_tokenizer.encode("import os\n").ids,
        long: tiny_tokenizer.encode("def parse_args(argv):\n    parser = argparse.ArgumentParser(").ids,
    }
    assert runner.bucket(len(prompts[short])) != runner.bucket(len(prompts[long]))
    steps = 12
    sampling = SlotParams(runner.slots)  # all greedy
    positions = np.full(runner.slots, runner.idle_position, np.int32)
    got = {slot: ([], []) for slot in prompts}
    for slot, prompt in prompts.items():
        [(token, logprob)] = runner.prefill([slot], [prompt], sampling)
        got[slot][0].append(token)
        got[slot][1].append(logprob)
        positions[slot] = len(prompt)
    for step in range(1, steps):
        # Each row is fed the token its slot produced last, which the device keeps.
        new, logprobs = runner.decode(
            positions, np.full(runner.slots, step, np.int32), sampling, long + 1
        ).result()
        assert len(new) == (2 if long == 1 else runner.slots)
        for slot in prompts:
            got[slot][0].append(int(new[slot]))
            got[slot][1].append(float(logprobs[slot]))
            positions[slot] += 1
    for slot, prompt in prompts.items():
        expected_tokens, expected_logprobs = _reference_greedy(tiny_model, prompt, steps)
        assert got[slot][0] == expected_tokens
        np.testing.assert_allclose(got[slot][1], expected_logprobs, atol=1e-4)


def test_decode_crosses_key_length_buckets_as_the_full_forward_pass(runner, tiny_model, tiny_tokenizer):
    """A row whose positions grow past a key-length bucket during decode attends to everything it wrote."""
    prompt = tiny_tokenizer.encode("class HelpFormatter(object):\n    def __init__(self, prog):").ids
    prompt = prompt[: runner.buckets[0] - 3]
    steps = 8
    assert runner.bucket(len(prompt)) < runner.bucket(len(prompt) + steps)  # decode crosses a bucket
    sampling = SlotParams(runner.slots)
    positions = np.full(runner.slots, runner.idle_position, np.int32)
    got = [runner.prefill([2], [prompt], sampling)[0][0]]
    positions[2] = len(prompt)
    for step in range(1, steps):
        new, _ = runner.decode(positions, np.full(runner.slots, step, np.int32), sampling, 3).result()
        got.append(int(new[2]))
        positions[2] += 1
    assert got == _reference_greedy(tiny_model, prompt, steps)[0]


def _greedy_after_prefill(runner, slots: list[int], firsts: list[int], lengths: list[int], steps: int):
    """Greedy decode from what prefill left in `slots`; returns each slot's tokens (first included)."""
    sampling = SlotParams(runner.slots)
    positions = np.full(runner.slots, runner.idle_position, np.int32)
    got = {slot: [first] for slot, first in zip(slots, firsts)}
    for slot, length in zip(slots, lengths):
        positions[slot] = length
    for step in range(1, steps):
        steps_taken = np.full(runner.slots, step, np.int32)
        new, _ = runner.decode(positions, steps_taken, sampling, runner.slots).result()
        for slot in slots:
            got[slot].append(int(new[slot]))
            positions[slot] += 1
    return [got[slot] for slot in slots]


def test_batched_prefill_matches_prefilling_one_by_one(runner, tiny_model, tiny_tokenizer):
    """Three prompts of different lengths (two length buckets, a padded batch of 4) into scattered slots."""
    texts = ["import os\n", "def main(", "class HelpFormatter(object):\n    def __init__(self, prog, width):"]
    prompts = [tiny_tokenizer.encode(t).ids for t in texts]
    assert runner.bucket(len(prompts[0])) < runner.bucket(len(prompts[2]))
    slots, lengths, steps = [3, 0, 2], [len(p) for p in prompts], 10
    sampling = SlotParams(runner.slots)  # greedy, but for one seeded sampled prompt
    sampling.set(0, seed_key_data(7), temperature=1.5, top_k=0, top_p=0.9, greedy=False)

    # Batched first, so that no one-by-one prefill has already left the right rows in these slots.
    batched = runner.prefill(slots, prompts, sampling)  # one call: batch bucket 4, the last prompt repeated
    together = _greedy_after_prefill(runner, slots, [t for t, _ in batched], lengths, steps)
    one_by_one = [runner.prefill([slot], [prompt], sampling)[0] for slot, prompt in zip(slots, prompts)]
    alone = _greedy_after_prefill(runner, slots, [t for t, _ in one_by_one], lengths, steps)

    assert [t for t, _ in batched] == [t for t, _ in one_by_one]
    np.testing.assert_allclose([lp for _, lp in batched], [lp for _, lp in one_by_one], atol=1e-5)
    assert together == alone
    for slot, prompt, tokens in zip(slots, prompts, together):  # both as the cache-free forward pass
        if slot != 0:  # greedy from the first token on; slot 0 sampled its first
            assert tokens[0] == _reference_greedy(tiny_model, prompt, 1)[0][0]
        assert tokens[1:] == _reference_greedy(tiny_model, prompt + tokens[:1], steps - 1)[0]


def test_ids_past_the_tokenizer_s_vocabulary_are_never_sampled(tiny_model):
    """The embedding may hold more rows than the tokenizer has tokens; those ids decode to nothing."""
    import numpy as np

    from jax_llm.serving.engine.runner import ModelRunner, SlotParams
    from jax_llm.serving.engine.sampling import seed_key_data

    runner = ModelRunner(tiny_model, 1, [16], 1, sample_vocab=40)
    sampling = SlotParams(1)
    drawn = set()
    for seed in range(12):
        sampling.set(0, seed_key_data(seed), 50.0, 0, 1.0, False)  # near uniform over what may be drawn
        [(token, logprob)] = runner.prefill([0], [[1, 2, 3]], sampling)
        drawn.add(token)
        assert np.isfinite(logprob)
    assert drawn and max(drawn) < 40 and len(drawn) > 3


def test_long_prompts_are_prefilled_fewer_at_a_time_each_as_it_would_be_alone(tiny_model, tiny_tokenizer):
    """A prefill call computes at most `max_prefill_tokens` (prompts x padded length): its logits and attention
    scores stay bounded however long the prompts (the memory plan counts on it)."""
    context = tiny_model.config.max_seq_len
    runner = ModelRunner(tiny_model, 4, [16, 32, context], max_prefill_batch=4, max_prefill_tokens=64)
    assert [runner.rows_at(bucket) for bucket in (16, 32, context)] == [4, 2, max(1, 64 // context)]
    assert runner.prefill_batch([5, 5, 5, 5]) == 4  # lengths shortest first, as the engine passes them
    assert runner.prefill_batch([5, 5, 20, 20]) == 2  # the third would pad the call to 32: 3 x 32 > 64
    assert runner.prefill_batch([context, context]) == 1
    texts = ("def parse(argv, options):\n    return argv" * 3, "import sys\nimport os\n" * 6)
    prompts = [tiny_tokenizer.encode(text).ids[:20] for text in texts]
    assert [len(prompt) for prompt in prompts] == [20, 20]  # both padded to 32
    with pytest.raises(ValueError, match="more than one prefill call takes"):
        runner.prefill([0, 1, 2], prompts + prompts[:1], SlotParams(4))
    together = runner.prefill([0, 1], prompts, SlotParams(4))
    alone = [runner.prefill([slot], [prompt], SlotParams(4))[0] for slot, prompt in enumerate(prompts)]
    assert [t for t, _ in together] == [t for t, _ in alone]
    np.testing.assert_allclose([lp for _, lp in together], [lp for _, lp in alone], rtol=1e-4, atol=1e-5)
