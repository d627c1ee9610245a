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
        elif _log_scaled(numbers):
            ax.set_xscale("log")
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


def importance(ranked: list[tuple[str, float, float]], objective: str, title: str):
    """Horizontal bars, most important hyperparameter on top, with the spread over shuffles."""
    names = [name for name, _, _ in ranked][::-1]  # barh draws the first row at the bottom
    means = [mean for _, mean, _ in ranked][::-1]
    spreads = [std for _, _, std in ranked][::-1]
    fig, ax = plt.subplots(figsize=(6.5, 1.2 + 0.4 * len(names)))
    ax.barh(range(len(names)), means, xerr=spreads, color="tab:blue", capsize=3)
    ax.set_yticks(range(len(names)), names)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel(f"importance for {objective} (drop in R² when shuffled)")
    ax.set_title(f"{title}: hyperparameter importance", fontsize="medium")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def parallel_coordinates(
    axes: dict[str, tuple[list[float], list[str] | None]],
    scores: list[float],
    objective: str,
    maximize: bool,
    title: str,
):
    """Each trial a line across its hyperparameters (numbers, or a choice's index among `choices`)
    and its objective, coloured by the objective; the best trials drawn last, in the brightest colour."""
    import numpy as np
    from matplotlib import colors

    names = [*axes, objective]
    columns = [*axes.values(), (scores, None)]
    positions = np.column_stack([_unit_scale(numbers, choices) for numbers, choices in columns])
    norm = colors.Normalize(min(scores), max(scores))
    cmap = plt.get_cmap("viridis" if maximize else "viridis_r")
    fig, ax = plt.subplots(figsize=(max(6.5, 1.5 * len(names) + 1.5), 4.8))
    order = sorted(range(len(scores)), key=lambda i: scores[i], reverse=not maximize)
    for i in order:  # worst first: the best lie on top
        ax.plot(range(len(names)), positions[i], color=cmap(norm(scores[i])), alpha=0.8, linewidth=1.4)
    for x, (numbers, choices) in enumerate(columns):
        ax.axvline(x, color="black", linewidth=0.8)
        for y, label in _axis_labels(numbers, choices):
            ax.text(x + 0.03, y, label, fontsize=7, va="center", ha="left", bbox=_LABEL_BOX)
    ax.set_xticks(
        range(len(names)), names, rotation=20 if len(names) > 5 else 0, ha="right" if len(names) > 5 else "center"
    )
    ax.set_xlim(-0.2, len(names) - 0.6)
    ax.set_ylim(-0.05, 1.05)
    ax.set_yticks([])
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=objective, pad=0.02)
    ax.set_title(f"{title}: {len(scores)} trials", fontsize="medium")
    fig.tight_layout()
    return fig


FEW_VALUES = 5  # an axis with up to this many distinct numbers labels each of them
# A label stays readable over the lines that cross it.
_LABEL_BOX = dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor="none", alpha=0.8)


def _log_scaled(numbers: list[float]) -> bool:
    """Learning rates and the like: positive and spanning a factor of ten or more."""
    finite = [n for n in numbers if n == n]
    return bool(finite) and min(finite) > 0 and max(finite) >= 10 * min(finite)


def _unit_scale(numbers: list[float], choices: list[str] | None):
    """Positions between 0 and 1 on a parallel axis: choices evenly spaced, numbers by value (log
    where they span decades); a constant axis in the middle; NaN (a trial without it) stays NaN."""
    import numpy as np

    values = np.asarray(numbers, dtype=float)
    if choices is not None:
        return values / (len(choices) - 1) if len(choices) > 1 else np.full_like(values, 0.5)
    if _log_scaled(numbers):
        values = np.log10(values)
    low, high = np.nanmin(values), np.nanmax(values)
    return (values - low) / (high - low) if high > low else np.full_like(values, 0.5)


def _axis_labels(numbers: list[float], choices: list[str] | None) -> list[tuple[float, str]]:
    """(position, text) along a parallel axis: every choice, every number when there are few, else
    the low, middle and high values."""
    if choices is not None:
        return [(i / (len(choices) - 1) if len(choices) > 1 else 0.5, c) for i, c in enumerate(choices)]
    distinct = sorted({n for n in numbers if n == n})
    low, high = distinct[0], distinct[-1]
    if len(distinct) > FEW_VALUES:
        distinct = [low, (low * high) ** 0.5 if _log_scaled(numbers) else (low + high) / 2, high]
    positions = _unit_scale([*distinct, *numbers], None)[: len(distinct)]  # scaled as the axis is
    return [(float(y), f"{n:.4g}") for y, n in zip(positions, distinct)]
