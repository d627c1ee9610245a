"""Members trained on the same labels in other encodings, made comparable before averaging.

Families encode one classification target differently: `mlp` learns integer labels with
softmax outputs and cross-entropy, `mlp_variant` one-hot targets with sigmoid outputs and
MSE. Their saved predictions hold the same rows and labels, so they are one data set:

- a head's targets are shared as saved when every member saved the same array; otherwise, when
  all are the same class labels (integer or one-hot), the head is scored on integer labels;
- a head scored on integer labels is scored by cross-entropy, which needs probabilities: a
  member whose class scores are not (sigmoid or linear outputs) has them normalised, clipped at
  zero and divided by their row's sum (uniform where that sum is zero). MSE on one-hot targets
  makes each sigmoid output an estimate of its class's probability (the conditional mean of a
  0/1 target); the normalised row sums to one and, for sigmoid outputs (all positive), keeps the member's argmax,
  hence its accuracy;
- members all trained on one-hot targets keep their scores and MSE, as they were trained.

The logged ensemble model applies the same rule to the same members (`keras_average`'s
`normalise` setting), so serving it gives the accuracy logged.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

SPLITS = ("val", "test")
_SUM_TOLERANCE = 1e-4  # softmax rows sum to one within float32 rounding


def is_one_hot(targets: np.ndarray, outputs: np.ndarray) -> bool:
    """One-hot class targets: the outputs' shape, 0/1 values, exactly one 1 a row."""
    return (
        targets.ndim == 2
        and targets.shape == outputs.shape
        and targets.shape[1] > 1
        and bool(np.isin(targets, (0, 1)).all())
        and bool((targets.sum(axis=1) == 1).all())
    )


def is_label_classification(targets: np.ndarray, outputs: np.ndarray) -> bool:
    """Integer class labels scored against one column of scores per class."""
    return targets.ndim == 1 and outputs.ndim == 2 and outputs.shape[1] > 1


def labels(targets: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    """The head's targets as integer labels where they are one-hot; unchanged otherwise."""
    return targets.argmax(axis=1).astype("int64") if is_one_hot(targets, outputs) else targets


def is_distribution(scores: np.ndarray) -> bool:
    """Non-negative rows summing to one (softmax outputs)."""
    return bool((scores >= 0).all()) and bool(np.allclose(scores.sum(axis=1), 1.0, atol=_SUM_TOLERANCE))


def to_probabilities(scores: np.ndarray) -> np.ndarray:
    """Scores clipped at zero and divided by their row's sum; uniform where that sum is zero.
    The logged model does the same (`sweeplab.tracking.keras_average`)."""
    clipped = np.clip(np.asarray(scores, dtype="float64"), 0.0, None)
    total = clipped.sum(axis=1, keepdims=True)
    return np.where(total > 0, clipped / np.where(total > 0, total, 1.0), 1.0 / clipped.shape[1])


def signature(saved) -> str:
    """What members of one ensemble share: heads, output shapes and targets, with class
    labels compared whatever their encoding (a short digest)."""
    digest = hashlib.sha256()
    for split in SPLITS:
        for head in sorted(saved.outputs[split]):
            outputs, targets = saved.outputs[split][head], saved.targets[split][head]
            canonical = np.ascontiguousarray(labels(targets, outputs))
            if canonical.dtype.kind in "iu":
                canonical = canonical.astype("int64")
            digest.update(f"{split}/{head}:{outputs.shape}:{canonical.dtype}:{canonical.shape};".encode())
            digest.update(canonical.tobytes())
    return digest.hexdigest()[:12]


@dataclass
class Comparable:
    """Members' outputs and the shared targets, per split, ready to average and score."""

    outputs: dict[str, list[dict[str, np.ndarray]]]  # split -> one {head: scores} per member
    targets: dict[str, dict[str, np.ndarray]]  # split -> {head: targets}
    normalised: list[list[str]]  # per member: the heads whose scores were normalised


def comparable(saved: list) -> Comparable:
    """The members' saved predictions (one `signature`) made comparable, head by head (module doc)."""
    reference = saved[0]
    outputs = {split: [dict(p.outputs[split]) for p in saved] for split in SPLITS}
    targets = {split: dict(reference.targets[split]) for split in SPLITS}
    normalised: list[list[str]] = [[] for _ in saved]
    for head in reference.heads:
        shared = all(
            np.array_equal(p.targets[split][head], reference.targets[split][head]) for p in saved for split in SPLITS
        )
        if not shared:
            for split in SPLITS:
                targets[split][head] = labels(reference.targets[split][head], reference.outputs[split][head])
        if not all(is_label_classification(targets[s][head], reference.outputs[s][head]) for s in SPLITS):
            continue
        for i, member in enumerate(saved):
            if not all(is_distribution(member.outputs[s][head]) for s in SPLITS):
                normalised[i].append(head)
                for split in SPLITS:
                    outputs[split][i][head] = to_probabilities(member.outputs[split][head])
    return Comparable(outputs, targets, normalised)
