"""The training state and the one jitted train step (gradient accumulation inside), plus the eval step.

The state is the NNX (model, optimizer) pair split into a static graph and a pytree of arrays, so the
step is a plain `jax.jit` of pure functions: no NNX graph traversal on the host per step, and the
state's buffers are donated (updated in place).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh

from jax_llm.model.config import ModelConfig
from jax_llm.model.gpt import GPT
from jax_llm.training import sharding


@dataclasses.dataclass
class TrainState:
    """graphdef: static structure of (GPT, nnx.Optimizer); state: its arrays; shardings: one per leaf."""

    graphdef: Any
    state: Any
    shardings: Any

    def model(self) -> GPT:
        """The GPT view of the current arrays (shares buffers; no copy)."""
        model, _ = nnx.merge(self.graphdef, self.state)
        return model


def create_train_state(
    config: ModelConfig, tx: optax.GradientTransformation, seed: int, mesh: Mesh, fsdp: bool
) -> TrainState:
    """Initialises parameters and optimizer state directly in their shards (no full copy on one device)."""

    def init():
        return nnx.split(_model_and_optimizer(config, tx, seed))[1]

    planned = plan_train_state(config, tx, seed, mesh, fsdp)
    state = jax.jit(init, out_shardings=planned.shardings)()
    return TrainState(planned.graphdef, state, planned.shardings)


def plan_train_state(
    config: ModelConfig, tx: optax.GradientTransformation, seed: int, mesh: Mesh, fsdp: bool
) -> TrainState:
    """The train state's structure with nothing allocated: `state` holds ShapeDtypeStructs carrying their
    shardings, so `make_train_step(...).lower(state, batch)` compiles the real step for `mesh` (the
    memory plan compiles a 7b step for 32 devices this way on a CPU)."""
    graphdef = nnx.split(nnx.eval_shape(lambda: _model_and_optimizer(config, tx, seed)))[0]  # no allocation
    abstract = jax.eval_shape(lambda: nnx.split(_model_and_optimizer(config, tx, seed))[1])
    shardings = sharding.state_shardings(abstract, mesh, fsdp)
    state = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract, shardings)
    return TrainState(graphdef, state, shardings)


def _model_and_optimizer(config: ModelConfig, tx, seed: int):
    """A freshly initialised GPT and its AdamW state (over the parameters only)."""
    model = GPT(config, rngs=nnx.Rngs(params=seed))
    return model, nnx.Optimizer(model, tx, wrt=nnx.Param)


def abstract_state(train_state: TrainState):
    """ShapeDtypeStructs with shardings: the restore target for a checkpoint."""
    return jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
        train_state.state,
        train_state.shardings,
    )


def _loss(model: GPT, tokens: jax.Array) -> jax.Array:
    """Mean next-token cross-entropy. tokens: [B, T+1] int32 -> scalar f32."""
    logits, _ = model(tokens[:, :-1])  # [B, T, V] f32
    return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()


def make_train_step(train_state: TrainState, grad_accum_steps: int, batch_sharding) -> Callable:
    """step(state, batch [B, T+1]) -> (state, loss): one update from `grad_accum_steps` micro-batches."""
    graphdef = train_state.graphdef

    def step(state, batch):
        model, optimizer = nnx.merge(graphdef, state)
        model_graph, params, rest = nnx.split(model, nnx.Param, ...)

        def micro_loss(p, tokens):
            return _loss(nnx.merge(model_graph, p, rest), tokens)

        # Row r = m * accum + a goes to micro-batch a. Keeping m as the leading (sharded) axis means
        # each device's micro-batches come from its own rows: no data moves between devices.
        rows, width = batch.shape
        micro = batch.reshape(rows // grad_accum_steps, grad_accum_steps, width)  # [B/A, A, T+1]
        micro = micro.swapaxes(0, 1)  # [A, B/A, T+1]: scan over A

        def accumulate(carry, tokens):
            loss_sum, grad_sum = carry
            loss, grads = jax.value_and_grad(micro_loss)(params, tokens)
            return (loss_sum + loss, jax.tree.map(jnp.add, grad_sum, grads)), None

        zeros = jax.tree.map(jnp.zeros_like, params)
        (loss_sum, grad_sum), _ = jax.lax.scan(accumulate, (jnp.zeros((), jnp.float32), zeros), micro)
        grads = jax.tree.map(lambda g: g / grad_accum_steps, grad_sum)
        optimizer.update(model, grads)
        return nnx.split((model, optimizer))[1], loss_sum / grad_accum_steps

    replicated = sharding.replicated(batch_sharding.mesh)
    return jax.jit(
        step,
        in_shardings=(train_state.shardings, batch_sharding),
        out_shardings=(train_state.shardings, replicated),
        donate_argnums=0,
    )


def make_eval_step(train_state: TrainState, batch_sharding) -> Callable:
    """eval(state, batch [B, T+1]) -> mean loss of the batch."""
    graphdef = train_state.graphdef

    def evaluate(state, batch):
        model, _ = nnx.merge(graphdef, state)
        return _loss(model, batch)

    return jax.jit(
        evaluate,
        in_shardings=(train_state.shardings, batch_sharding),
        out_shardings=sharding.replicated(batch_sharding.mesh),
    )
