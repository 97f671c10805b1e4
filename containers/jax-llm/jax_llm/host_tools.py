"""The image's functions for tools that run beside it on the host (local mode's demo): they work on exported
model directories and channels, the files the jobs exchange, so a tool needs nothing else of the image's
wings. Imports JAX when called, not when imported.
"""

from __future__ import annotations

from pathlib import Path


def held_out_loss(model_dir: Path, validation: Path, *, rows: int = 16, batches: int = 8) -> float:
    """Mean next-token cross-entropy of an exported model on the first windows of the validation shards: the
    same tokens for any model, so the untrained and trained runs compare on it."""
    import numpy as np
    import optax

    from jax_llm.data.shards import open_shard
    from jax_llm.model.export import load_model

    model = load_model(model_dir)
    seq_len = model.config.max_seq_len
    tokens = np.concatenate([np.asarray(open_shard(path)) for path in sorted(validation.glob("*.bin"))])
    count = min(rows * batches, (len(tokens) - 1) // seq_len)
    windows = np.stack([tokens[i * seq_len : (i + 1) * seq_len + 1] for i in range(count)]).astype(np.int32)
    losses = []
    for start in range(0, count, rows):
        chunk = windows[start : start + rows]
        logits, _ = model(chunk[:, :-1])
        losses.append(float(optax.softmax_cross_entropy_with_integer_labels(logits, chunk[:, 1:]).mean()))
    return float(np.mean(losses))


def save_initial_model(model_dir: Path, seed: int, destination: Path) -> Path:
    """`destination`: the exported model directory of `model_dir`'s architecture at its step-0 initialization
    (the trainer's own, for that seed), with the same tokenizer."""
    from flax import nnx

    from jax_llm.model.export import TOKENIZER_FILE, read_model_config, save_model
    from jax_llm.model.gpt import GPT

    # The trainer initializes GPT(config, rngs=nnx.Rngs(params=seed)): the same call gives its step-0 weights.
    model = GPT(read_model_config(model_dir), rngs=nnx.Rngs(params=seed))
    save_model(destination, model, model_dir / TOKENIZER_FILE)
    return destination
