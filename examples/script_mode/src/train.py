"""A team's own Flax training script, as SageMaker script mode runs it on the jax-llm image.

A byte-level bigram language model (an embedding table of next-byte logits) trained with Optax on every
file of the `train` channel. What it takes from SageMaker: hyperparameters as arguments, the channel and
model directories from SM_*, and on several hosts `join_cluster()` from the image's contract.
"""

import argparse
import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jax_llm.contract.distributed import join_cluster

parser = argparse.ArgumentParser()
parser.add_argument("--learning-rate", type=float, default=0.1)
parser.add_argument("--batch-size", type=int, default=256)
parser.add_argument("--epochs", type=int, default=2)
args = parser.parse_args()

# Several hosts: the image's one call joins them from whatever launched the job (the image's script mode,
# SDK v3's driver, or plain resourceconfig.json); on one host it does nothing.
join_cluster()
data = np.frombuffer(
    b"".join(p.read_bytes() for p in sorted(Path(os.environ["SM_CHANNEL_TRAIN"]).rglob("*")) if p.is_file()),
    np.uint8,
)
pairs = np.stack([data[:-1], data[1:]], 1)[jax.process_index() :: jax.process_count()]  # this host's share


class Bigram(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.logits = nnx.Embed(256, 256, rngs=rngs)

    def __call__(self, x):
        return self.logits(x)


model = Bigram(nnx.Rngs(0))
optimizer = nnx.Optimizer(model, optax.adam(args.learning_rate), wrt=nnx.Param)


@nnx.jit
def step(model, optimizer, batch):
    def loss_fn(model):
        return optax.softmax_cross_entropy_with_integer_labels(model(batch[:, 0]), batch[:, 1]).mean()

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss


for epoch in range(args.epochs):
    order = np.random.default_rng(epoch).permutation(len(pairs))
    losses = [
        step(model, optimizer, jnp.asarray(pairs[order[i : i + args.batch_size]]))
        for i in range(0, len(pairs) - args.batch_size + 1, args.batch_size)
    ]
    print(f"epoch {epoch + 1}/{args.epochs} loss={float(np.mean(jax.device_get(losses))):.4f}", flush=True)

if jax.process_index() == 0:  # one host writes the model (SageMaker tars SM_MODEL_DIR to model.tar.gz)
    model_dir = Path(os.environ["SM_MODEL_DIR"])
    np.save(model_dir / "bigram.npy", np.asarray(model.logits.embedding.value))
    (model_dir / "hosts.json").write_text(
        json.dumps({"processes": jax.process_count(), "hosts": json.loads(os.environ["SM_HOSTS"])})
    )
