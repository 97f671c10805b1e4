"""AdamW with linear warmup and cosine decay, global-norm clipping; weight decay on matrices only."""

from __future__ import annotations

import jax
import optax

from jax_llm.contract.hyperparameters import TrainConfig


def learning_rate_schedule(config: TrainConfig) -> optax.Schedule:
    """0 -> learning_rate over warmup_steps, then cosine down to learning_rate x min_lr_ratio at max_steps."""
    warmup = min(config.warmup_steps, config.max_steps - 1)
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=config.learning_rate,
        warmup_steps=warmup,
        decay_steps=config.max_steps,  # includes the warmup, as optax counts it
        end_value=config.learning_rate * config.min_lr_ratio,
    )


def _key_name(key) -> str:
    return str(getattr(key, "key", getattr(key, "name", getattr(key, "idx", key))))


def _decay_mask(params):
    # Norm scales are not decayed: shrinking them towards 0 only fights the normalisation. They are
    # told by name, not by rank: a scanned model stacks them into [n_layers, d] matrices.
    def decays(path, p) -> bool:
        return p.ndim >= 2 and "scale" not in {_key_name(k) for k in path}

    return jax.tree_util.tree_map_with_path(decays, params)


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """The optax chain the train step applies once per (accumulated) step."""
    adamw = optax.adamw(
        learning_rate_schedule(config),
        b1=config.adam_b1,
        b2=config.adam_b2,
        eps=1e-8,
        weight_decay=config.weight_decay,
        mask=_decay_mask,
    )
    if config.grad_clip > 0:
        return optax.chain(optax.clip_by_global_norm(config.grad_clip), adamw)
    return adamw
