"""The runner's cached prefill/decode against the model's plain full-sequence forward pass."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jax_llm.serving.runner import SlotParams


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
    tokens = np.zeros(runner.slots, np.int32)
    positions = np.full(runner.slots, runner.idle_position, np.int32)
    got = {slot: ([], []) for slot in prompts}
    for slot, prompt in prompts.items():
        token, logprob = runner.prefill(slot, prompt, sampling.row(slot))
        got[slot][0].append(token)
        got[slot][1].append(logprob)
        tokens[slot], positions[slot] = token, len(prompt)
    for step in range(1, steps):
        new, logprobs = runner.decode(
            tokens, positions, np.full(runner.slots, step, np.int32), sampling, long + 1
        )
        assert len(new) == (2 if long == 1 else runner.slots)
        for slot in prompts:
            got[slot][0].append(int(new[slot]))
            got[slot][1].append(float(logprobs[slot]))
            tokens[slot], positions[slot] = new[slot], positions[slot] + 1
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
    tokens = np.zeros(runner.slots, np.int32)
    positions = np.full(runner.slots, runner.idle_position, np.int32)
    got = [runner.prefill(2, prompt, sampling.row(2))[0]]
    tokens[2], positions[2] = got[0], len(prompt)
    for step in range(1, steps):
        new, _ = runner.decode(tokens, positions, np.full(runner.slots, step, np.int32), sampling, 3)
        got.append(int(new[2]))
        tokens[2], positions[2] = new[2], positions[2] + 1
    assert got == _reference_greedy(tiny_model, prompt, steps)[0]
