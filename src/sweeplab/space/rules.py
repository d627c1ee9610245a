"""Rules: which values a family's builder accepts for each hyperparameter it
reads (an activation Keras knows, a positive number of units...). Every value
a space can produce is checked against them before any training starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sweeplab.errors import ConfigError


@dataclass(frozen=True)
class Number:
    """An int or float within [low, high] (either bound optional)."""

    kind: type = float
    low: float | None = None
    high: float | None = None
    default: Any = None
    low_exclusive: bool = False
    high_exclusive: bool = False

    def check(self, key: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(key, value, self.describe())
        if self.kind is int and not float(value).is_integer():
            raise ConfigError(key, value, self.describe())
        if not math.isfinite(value):
            raise ConfigError(key, value, self.describe())
        too_low = self.low is not None and (value <= self.low if self.low_exclusive else value < self.low)
        too_high = self.high is not None and (value >= self.high if self.high_exclusive else value > self.high)
        if too_low or too_high:
            raise ConfigError(key, value, self.describe())

    def describe(self) -> str:
        name = "an integer" if self.kind is int else "a number"
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_exclusive else '>='} {self.low}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_exclusive else '<='} {self.high}")
        return name + (" " + " and ".join(parts) if parts else "")


@dataclass(frozen=True)
class OneOf:
    """One of a fixed set of values (activation names, placements...)."""

    allowed: tuple
    default: Any = None

    def check(self, key: str, value: Any) -> None:
        if value not in self.allowed:
            raise ConfigError(key, value, f"one of {list(self.allowed)}")

    def describe(self) -> str:
        return f"one of {list(self.allowed)}"


@dataclass(frozen=True)
class Flag:
    default: bool = False

    def check(self, key: str, value: Any) -> None:
        if not isinstance(value, bool):
            raise ConfigError(key, value, "true or false")

    def describe(self) -> str:
        return "true or false"


Rule = Number | OneOf | Flag
