"""What the families share: the single-head config schema (fixed settings plus
`space`) and the rules of hyperparameters several families read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sweeplab.space.rules import Number
from sweeplab.space.vocabulary import OUTPUT_ACTIVATIONS

DROPOUT = Number(float, low=0.0, high=1.0, high_exclusive=True, default=0.0)
# None: the learning rate comes from the family's or the trainer's settings.
LEARNING_RATE = Number(float, low=0.0, low_exclusive=True, default=None)


@dataclass
class SingleHeadConfig:
    family: str = ""
    output_activation: str = "softmax"
    space: dict[str, Any] = field(default_factory=dict)

    def check(self) -> list[tuple[str, Any, str]]:
        """(key, value, expected) for every bad fixed setting."""
        if self.output_activation not in OUTPUT_ACTIVATIONS:
            return [("model.output_activation", self.output_activation, f"one of {list(OUTPUT_ACTIVATIONS)}")]
        return []
