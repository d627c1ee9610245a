"""Ensemble weights chosen on validation predictions only.

Pure numpy (scipy for the optimizer): members are given as {head: outputs}
dicts, so multi-output nets are averaged head by head with the same weights.
Metrics follow Keras's names: `loss` and `accuracy` (or `mae`) for one head;
`<head>_loss`, `<head>_accuracy` (or `<head>_mae`) and the summed `loss` for
several.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sweeplab.errors import EnsembleError
from sweeplab.tracking import metric_names

Heads = dict[str, np.ndarray]
METHODS = ("greedy", "optimize")
_EPSILON = 1e-7  # Keras's clip for log-probabilities
_MIN_WEIGHT = 1e-4  # optimizer weights below this are noise


def average(members: list[Heads], weights) -> Heads:
    """The weighted average of the members' outputs, head by head."""
    weights = np.asarray(weights, dtype="float64")
    return {head: sum(w * m[head].astype("float64") for w, m in zip(weights, members) if w > 0) for head in members[0]}


def head_metrics(output: np.ndarray, target: np.ndarray) -> dict[str, float]:
    if output.ndim == 2 and output.shape[1] > 1 and target.ndim == 1:  # class probabilities, integer labels
        picked = output[np.arange(len(target)), target.astype("int64")]
        return {
            "loss": float(-np.mean(np.log(np.clip(picked, _EPSILON, 1.0)))),
            "accuracy": float(np.mean(output.argmax(axis=1) == target)),
        }
    if output.ndim == 2 and output.shape[1] > 1 and target.shape == output.shape:  # one-hot targets
        return {
            "loss": float(np.mean((output - target) ** 2)),
            "accuracy": float(np.mean(output.argmax(axis=1) == target.argmax(axis=1))),
        }
    error = output.reshape(len(target), -1) - target.reshape(len(target), -1)
    return {"loss": float(np.mean(error**2)), "mae": float(np.mean(np.abs(error)))}


def evaluate(outputs: Heads, targets: Heads) -> dict[str, float]:
    """Keras-style metrics of `outputs` against `targets` (see the module doc)."""
    if len(outputs) == 1:
        (head,) = outputs
        return head_metrics(outputs[head], targets[head])
    metrics = {"loss": 0.0}
    for head in outputs:
        for name, value in head_metrics(outputs[head], targets[head]).items():
            metrics[f"{head}_{name}"] = value
        metrics["loss"] += metrics[f"{head}_loss"]
    return metrics


def metric_name(objective: str) -> str:
    """`val_accuracy` -> `accuracy`: the name in `evaluate`'s result."""
    return metric_names.metric_of(objective)


@dataclass
class Budget:
    """What the members of weight > 0 may cost together: {metric: limit}, and each member's costs."""

    limits: dict[str, float]
    costs: list[dict[str, float]]

    def allows(self, members) -> bool:
        """Whether the members at these indices keep within every limit."""
        return all(sum(self.costs[i][m] for i in set(members)) <= limit for m, limit in self.limits.items())


@dataclass
class Selection:
    weights: np.ndarray  # one per member, non-negative, summing to one
    val_metrics: dict[str, float]  # the ensemble's
    best_member: int  # index of the best single member on validation
    best_member_val_metrics: dict[str, float]


class _Scorer:
    """Orders validation outputs: the objective first, the loss to break ties."""

    def __init__(self, targets: Heads, objective: str, maximize: bool):
        self.targets, self.name, self.sign = targets, metric_name(objective), 1.0 if maximize else -1.0

    def metrics(self, outputs: Heads) -> dict[str, float]:
        metrics = evaluate(outputs, self.targets)
        if self.name not in metrics:
            raise EnsembleError(
                f"objective {self.name!r} cannot be computed from saved predictions; "
                f"expected one of {sorted(metrics)} (set the objective, e.g. val_{sorted(metrics)[0]})"
            )
        return metrics

    def key(self, outputs: Heads) -> tuple[float, float]:
        metrics = self.metrics(outputs)
        return self.sign * metrics[self.name], -metrics["loss"]


def _best_single(members: list[Heads], scorer: _Scorer, budget: Budget | None = None) -> int:
    allowed = [i for i in range(len(members)) if budget is None or budget.allows([i])]
    if not allowed:
        raise EnsembleError(f"no candidate keeps within the budget alone ({budget.limits})")
    keys = {i: scorer.key(average(members, np.eye(len(members))[i])) for i in allowed}
    return max(allowed, key=lambda i: keys[i])


def greedy_weights(members: list[Heads], scorer: _Scorer, max_steps: int, budget: Budget | None = None) -> np.ndarray:
    """Forward selection with replacement (Caruana et al., 2004).

    Start from the best single member; at each step add the member (again, if
    it helps) whose addition best improves validation; stop when none does or
    after `max_steps` additions. Weights are how often each was picked. With a
    `budget`, a member not picked yet is tried only if the picked ones and it
    keep within it (picking one again costs nothing more).
    """

    # Every candidate is scored through `average`, as the final weights are, so
    # float rounding cannot make the chosen ensemble differ from what was scored.
    def key(counts):
        return scorer.key(average(members, counts / counts.sum()))

    def affordable(i):
        return budget is None or budget.allows([*np.flatnonzero(counts), i])

    counts = np.zeros(len(members))
    counts[_best_single(members, scorer, budget)] = 1
    current = key(counts)
    for _ in range(max_steps):
        tried = [(key(counts + np.eye(len(members))[i]), i) for i in range(len(members)) if affordable(i)]
        best_key, pick = max(tried, key=lambda t: t[0])
        if best_key <= current:
            break
        counts[pick] += 1
        current = best_key
    return counts / counts.sum()


def optimized_weights(members: list[Heads], scorer: _Scorer, start: np.ndarray) -> np.ndarray:
    """Minimize the validation loss over the simplex (SLSQP), from `start`."""
    from scipy.optimize import minimize

    def loss(w):
        return evaluate(average(members, np.clip(w, 0, None)), scorer.targets)["loss"]

    result = minimize(
        loss,
        start,
        method="SLSQP",
        bounds=[(0.0, 1.0)] * len(members),
        constraints=[{"type": "eq", "fun": lambda w: np.sum(w) - 1.0}],
        options={"maxiter": 200, "ftol": 1e-9},
    )
    weights = np.where(result.x > _MIN_WEIGHT, result.x, 0.0)
    return weights / weights.sum() if weights.sum() > 0 else start


def select(
    members: list[Heads],
    targets: Heads,
    objective: str,
    maximize: bool,
    method: str = "greedy",
    max_steps: int = 20,
    budget: Budget | None = None,
) -> Selection:
    """Weights for `members` from validation outputs and targets only (with `budget`: the members of
    weight > 0 keep within it, and the best member compared with is the best one that does)."""
    if not members:
        raise EnsembleError("no candidates to ensemble")
    if method not in METHODS:
        raise EnsembleError(f"ensemble.method: got {method!r}; expected one of {list(METHODS)}")
    scorer = _Scorer(targets, objective, maximize)
    best = _best_single(members, scorer, budget)
    best_alone = average(members, np.eye(len(members))[best])
    weights = greedy_weights(members, scorer, max_steps, budget)
    if method == "optimize" and len(members) > 1:
        optimized = optimized_weights(members, scorer, weights)
        # Never worse than the best member on the objective; greedy guarantees that.
        affordable = budget is None or budget.allows(np.flatnonzero(optimized))
        if affordable and scorer.key(average(members, optimized))[0] >= scorer.key(best_alone)[0]:
            weights = optimized
    return Selection(
        weights=weights,
        val_metrics=scorer.metrics(average(members, weights)),
        best_member=best,
        best_member_val_metrics=scorer.metrics(best_alone),
    )
