"""Loss curves for `output/data/` (uploaded with the job's output): a JSON record and a PNG plot."""

from __future__ import annotations

import json
from pathlib import Path

from jax_llm.contract.paths import LOSS_CURVES_JSON, LOSS_CURVES_PNG


def write_loss_curves(out_dir: Path, history: dict[str, list[list[float]]]) -> None:
    """history: {"train_loss": [[step, loss], ...], "val_loss": [[step, loss], ...]}."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a training host
    from matplotlib import pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / LOSS_CURVES_JSON).write_text(json.dumps(history) + "\n")
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, points in history.items():
        if points:
            steps, losses = zip(*points)
            ax.plot(steps, losses, marker="o" if len(points) < 30 else None, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / LOSS_CURVES_PNG, dpi=100)
    plt.close(fig)
