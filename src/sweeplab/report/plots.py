"""Report figures over an experiment's finished trials (and the comparison by a param)."""

from __future__ import annotations

from sweeplab.tracking.plots import plt


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


def best_so_far_by_search(series: dict[str, list[float]], objective: str, maximize: bool):
    """One line per search: the best objective so far, trial after trial."""
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for label, scores in series.items():
        best, line = None, []
        for score in scores:
            best = score if best is None else (max(best, score) if maximize else min(best, score))
            line.append(best)
        ax.step(range(1, len(line) + 1), line, where="post", marker="o", label=label)
    ax.set_xlabel("finished trial")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel(f"best {objective} so far")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def objective_by_family(scores: dict[str, list[float]], objective: str):
    """Every finished trial's objective, one column per family."""
    fig, ax = plt.subplots(figsize=(max(4, 1.5 * len(scores) + 2), 3.8))
    for i, values in enumerate(scores.values()):
        ax.boxplot(values, positions=[i], widths=0.5)
        ax.scatter([i] * len(values), values, alpha=0.6, zorder=3)
    ax.set_xticks(range(len(scores)), list(scores))
    ax.set_ylabel(objective)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def hyperparameters_vs_objective(points: dict[str, list[tuple]], objective: str):
    """One panel per hyperparameter: its value in each trial against the objective."""
    names = sorted(points)
    columns = min(3, max(1, len(names)))
    rows = (len(names) + columns - 1) // columns or 1
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        values = [v for v, _ in points[name]]
        numbers = _as_numbers(values)
        if numbers is None:  # categorical: one position per choice
            choices = sorted(set(values))
            numbers = [choices.index(v) for v in values]
            ax.set_xticks(range(len(choices)), choices, rotation=20)
        elif min(numbers) > 0 and max(numbers) >= 10 * min(numbers):
            ax.set_xscale("log")  # learning rates and the like
        ax.scatter(numbers, [s for _, s in points[name]], alpha=0.7)
        ax.set_xlabel(name)
        ax.set_ylabel(objective)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def _as_numbers(values: list[str]) -> list[float] | None:
    try:
        return [float(v) for v in values]
    except ValueError:
        return None
