"""The ensemble's figure: one bar per member, its weight."""

from __future__ import annotations

from sweeplab.tracking.plots import plt


def ensemble_weights(labels: list[str], weights: list[float], title: str):
    """One bar per ensemble member: its weight."""
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(labels) + 2), 3.6))
    ax.bar(range(len(labels)), weights, color="tab:blue")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_ylabel("weight")
    ax.set_ylim(0, 1)
    for i, weight in enumerate(weights):
        ax.text(i, weight, f"{weight:.2f}", ha="center", va="bottom")
    ax.set_title(title)
    fig.tight_layout()
    return fig
