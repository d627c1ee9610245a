"""Figures logged with a search and its trials (matplotlib, no display needed)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def learning_curves(history: dict[str, list[float]], title: str):
    """One panel per metric: training and validation curves by epoch."""
    names = [k for k in history if not k.startswith("val_")]
    width, height = 5 * len(names), 3.6
    fig, axes = plt.subplots(1, len(names), figsize=(width, height), squeeze=False)
    for ax, name in zip(axes[0], names):
        epochs = range(1, len(history[name]) + 1)
        ax.plot(epochs, history[name], marker="o", label="train")
        if f"val_{name}" in history:
            ax.plot(range(1, len(history[f"val_{name}"]) + 1), history[f"val_{name}"], marker="o", label="validation")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    # Fixed margins (inches) instead of tight_layout, which costs more than the drawing itself
    # and runs for every trial.
    fig.subplots_adjust(
        left=0.75 / width, right=1 - 0.2 / width, bottom=0.55 / height, top=1 - 0.5 / height, wspace=0.3
    )
    return fig


def search_progress(scores: list[float | None], objective: str, maximize: bool, title: str):
    """Each trial's objective in the order run, with the best so far."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    trials = range(1, len(scores) + 1)
    done = [(t, s) for t, s in zip(trials, scores) if s is not None]
    if done:
        ax.scatter([t for t, _ in done], [s for _, s in done], label="trial", zorder=3)
        best, best_so_far = None, []
        for _, score in done:
            best = score if best is None else (max(best, score) if maximize else min(best, score))
            best_so_far.append(best)
        ax.step([t for t, _ in done], best_so_far, where="post", color="tab:red", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(objective)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def close(fig) -> None:
    plt.close(fig)
