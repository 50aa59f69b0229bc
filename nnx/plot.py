"""Training curves as a PNG (needs matplotlib: pip install 'nnx-array[plot]')."""

from __future__ import annotations

import os
from typing import Any

from .atomic import atomic_writer

PLOT_HINT = "install matplotlib for curves.png: pip install 'nnx-array[plot]'"


def plot_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def plot_history(history: dict[str, Any], path: str | os.PathLike[str]) -> bool:
    """Draw loss, accuracy and learning rate per epoch (and per step) into ``path``.

    Returns False (and draws nothing) when matplotlib is not installed.
    """
    if not plot_available():
        return False
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    epochs = history.get("epochs", [])
    steps = history.get("steps", [])
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax_loss, ax_acc, ax_lr = axes
    if steps:
        n_per_epoch = max(1, sum(1 for s in steps if s["epoch"] == steps[0]["epoch"]))
        xs = [s["epoch"] - 1 + (s["step"] + 1) / n_per_epoch for s in steps]
        ax_loss.plot(xs, [s["loss"] for s in steps], color="0.75", lw=0.8, label="train (step)")
        ax_lr.plot(xs, [s["lr"] for s in steps], color="C2", lw=1.2, label="lr (step)")
    if epochs:
        ex = [e["epoch"] for e in epochs]
        ax_loss.plot(ex, [e["train_loss"] for e in epochs], "o-", color="C0", label="train")
        ax_acc.plot(ex, [e["train_acc"] for e in epochs], "o-", color="C0", label="train")
        if epochs[0].get("val_loss") is not None:
            ax_loss.plot(ex, [e["val_loss"] for e in epochs], "s-", color="C1", label="validation")
            ax_acc.plot(ex, [e["val_acc"] for e in epochs], "s-", color="C1", label="validation")
        if not steps:
            ax_lr.plot(ex, [e["lr"] for e in epochs], "o-", color="C2", label="lr")
    ax_loss.set(title="Loss", xlabel="epoch", ylabel="cross-entropy")
    ax_acc.set(title="Accuracy", xlabel="epoch", ylabel="accuracy")
    ax_lr.set(title="Learning rate", xlabel="epoch", ylabel="lr")
    if steps and any(s["lr"] > 0 for s in steps):
        ax_lr.set_yscale("log")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    try:
        with atomic_writer(path) as f:
            fig.savefig(f, format="png", dpi=110)
    finally:
        plt.close(fig)
    return True
