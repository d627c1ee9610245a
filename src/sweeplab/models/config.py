"""The config schema shared by single-head families: fixed settings plus `space`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict

from sweeplab.vocabulary import OUTPUT_ACTIVATIONS


@dataclass
class SingleHeadConfig:
    family: str = ""
    output_activation: str = "softmax"
    space: Dict[str, Any] = field(default_factory=dict)

    def check(self) -> list[tuple[str, Any, str]]:
        """(key, value, expected) for every bad fixed setting."""
        if self.output_activation not in OUTPUT_ACTIVATIONS:
            return [("model.output_activation", self.output_activation, f"one of {list(OUTPUT_ACTIVATIONS)}")]
        return []
