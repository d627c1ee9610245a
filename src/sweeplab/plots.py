"""Figures logged as MLflow artifacts (matplotlib, no display needed)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def learning_curves(history: dict[str, list[float]], title: str):
    """One panel per metric: training and validation curves by epoch."""
    names = [k for k in history if not k.startswith("val_")]
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        epochs = range(1, len(history[name]) + 1)
        ax.plot(epochs, history[name], marker="o", label="train")
        if f"val_{name}" in history:
            ax.plot(range(1, len(history[f"val_{name}"]) + 1), history[f"val_{name}"], marker="o", label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
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


def comparison(columns: list[str], rows: list[list], title: str):
    """One bar panel per compared quantity, one bar per trial (e.g. per variant)."""
    labels = [str(row[0]) for row in rows]
    quantities = columns[1:]
    ncols = min(3, len(quantities))
    nrows = -(-len(quantities) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.5 * ncols, 3.2 * nrows), squeeze=False)
    for index, ax in enumerate(axes.flat):
        if index >= len(quantities):
            ax.axis("off")
            continue
        values = [row[index + 1] if row[index + 1] is not None else 0.0 for row in rows]
        positions = range(len(labels))
        ax.bar(positions, values, color="tab:blue")
        ax.set_xticks(positions, labels)
        ax.set_title(quantities[index].replace("final_", ""))
        ax.set_xlabel(columns[0])
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
