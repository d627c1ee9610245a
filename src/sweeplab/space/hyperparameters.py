"""Search spaces are data: a model's `space:` config -> Keras Tuner `hp` calls.

A space entry is either a mapping that declares a searched hyperparameter
(type int, float, choice or boolean; min/max/step/sampling or values; default)
or a plain value, which fixes that hyperparameter: it is not searched. Model
builders never see `hp`; they get a plain dict of values from `Space.sample`
inside a search, or `Space.defaults()` outside one.

Each model family declares which hyperparameters its builder reads, each with
a rule (`rules.py`); `parse_space` checks every value a space can produce
against them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sweeplab.errors import ConfigError
from sweeplab.space.rules import Number, Rule

TYPES = ("int", "float", "choice", "boolean")
SAMPLINGS = ("linear", "log", "reverse_log")
_SPEC_KEYS = {"type", "min", "max", "step", "sampling", "values", "default"}


@dataclass(frozen=True)
class Hyperparameter:
    """One searched hyperparameter, or a fixed value (`fixed` set)."""

    name: str
    type: str
    min: float | None = None
    max: float | None = None
    step: float | None = None
    sampling: str = "linear"
    values: tuple = ()
    default: Any = None
    fixed: Any = None
    is_fixed: bool = False

    def declare(self, hp) -> Any:
        """Register this hyperparameter with a Keras Tuner `HyperParameters`."""
        if self.is_fixed:
            return hp.Fixed(self.name, self.fixed)
        if self.type == "int":
            return hp.Int(
                self.name,
                int(self.min),
                int(self.max),
                step=None if self.step is None else int(self.step),
                sampling=self.sampling,
                default=None if self.default is None else int(self.default),
            )
        if self.type == "float":
            return hp.Float(
                self.name,
                float(self.min),
                float(self.max),
                step=self.step,
                sampling=self.sampling,
                default=None if self.default is None else float(self.default),
            )
        if self.type == "choice":
            return hp.Choice(self.name, list(self.values), default=self.default)
        return hp.Boolean(self.name, default=bool(self.default))

    def default_value(self) -> Any:
        if self.is_fixed:
            return self.fixed
        if self.default is not None:
            return self.default
        if self.type in ("int", "float"):
            return self.min
        if self.type == "choice":
            return self.values[0]
        return False

    def candidate_values(self) -> list:
        """Every value the rule must accept (range ends, choices, default)."""
        if self.is_fixed:
            return [self.fixed]
        if self.type in ("int", "float"):
            values = [self.min, self.max]
        elif self.type == "choice":
            values = list(self.values)
        else:
            values = [True, False]
        if self.default is not None:
            values.append(self.default)
        return values


@dataclass
class Space:
    """A model family's hyperparameters: searched ones and fixed ones."""

    hyperparameters: dict[str, Hyperparameter] = field(default_factory=dict)
    rule_defaults: dict[str, Any] = field(default_factory=dict)

    def sample(self, hp) -> dict[str, Any]:
        """Declare every hyperparameter on `hp`; return the values to build with."""
        values = dict(self.rule_defaults)
        for name, spec in self.hyperparameters.items():
            values[name] = spec.declare(hp)
        return values

    def defaults(self) -> dict[str, Any]:
        """Values to build with outside a search."""
        values = dict(self.rule_defaults)
        values.update({n: s.default_value() for n, s in self.hyperparameters.items()})
        return values

    @property
    def searched(self) -> list[str]:
        return [n for n, s in self.hyperparameters.items() if not s.is_fixed]

    def require_grid_compatible(self, prefix: str) -> None:
        """Keras Tuner's grid search needs a finite grid for every hyperparameter."""
        for name, spec in self.hyperparameters.items():
            if spec.is_fixed or spec.step is not None:
                continue
            if spec.type == "float":
                raise ConfigError(f"{prefix}.{name}.step", None, "a step: grid search needs one for every float")
            if spec.type == "int" and spec.sampling != "linear":
                raise ConfigError(
                    f"{prefix}.{name}.step",
                    None,
                    "a step: grid search needs one for an int with log sampling",
                )


def parse_space(raw: Mapping[str, Any] | None, rules: Mapping[str, Rule], prefix: str = "model.space") -> Space:
    """Validate a `space:` mapping against a family's rules and build a Space."""
    raw = raw or {}
    if not isinstance(raw, Mapping):
        raise ConfigError(prefix, raw, "a mapping of hyperparameter name -> spec or fixed value")
    hyperparameters = {}
    for name, entry in raw.items():
        key = f"{prefix}.{name}"
        if name not in rules:
            raise ConfigError(key, entry, f"a hyperparameter of this family: one of {sorted(rules)}")
        rule = rules[name]
        spec = _parse_entry(name, entry, key)
        for value in spec.candidate_values():
            rule.check(key, value)
        if spec.type == "choice" and spec.default is not None and spec.default not in spec.values:
            raise ConfigError(f"{key}.default", spec.default, f"one of the values {list(spec.values)}")
        hyperparameters[name] = spec
    rule_defaults = {n: r.default for n, r in rules.items() if n not in hyperparameters}
    return Space(hyperparameters, rule_defaults)


def _parse_entry(name: str, entry: Any, key: str) -> Hyperparameter:
    if not isinstance(entry, Mapping):
        if isinstance(entry, Sequence) and not isinstance(entry, str):
            raise ConfigError(key, entry, "a spec mapping or a single fixed value")
        return Hyperparameter(name=name, type="fixed", fixed=entry, is_fixed=True)

    unknown = set(entry) - _SPEC_KEYS
    if unknown:
        bad = sorted(unknown)[0]
        raise ConfigError(f"{key}.{bad}", entry[bad], f"one of the keys {sorted(_SPEC_KEYS)}")
    hp_type = entry.get("type")
    if hp_type not in TYPES:
        raise ConfigError(f"{key}.type", hp_type, f"one of {list(TYPES)}")

    default = entry.get("default")
    if hp_type in ("int", "float"):
        return _parse_range(name, entry, key, hp_type, default)
    if hp_type == "choice":
        values = entry.get("values")
        if not isinstance(values, Sequence) or isinstance(values, str) or not values:
            raise ConfigError(f"{key}.values", values, "a non-empty list of choices")
        if len({type(v) for v in values}) > 1:
            raise ConfigError(f"{key}.values", list(values), "choices that all have the same type")
        _forbid(entry, key, ("min", "max", "step", "sampling"), "choice")
        return Hyperparameter(name=name, type="choice", values=tuple(values), default=default)
    _forbid(entry, key, ("min", "max", "step", "sampling", "values"), "boolean")
    if default is not None and not isinstance(default, bool):
        raise ConfigError(f"{key}.default", default, "true or false")
    return Hyperparameter(name=name, type="boolean", default=default)


def _parse_range(name: str, entry: Mapping, key: str, hp_type: str, default: Any) -> Hyperparameter:
    _forbid(entry, key, ("values",), hp_type)
    number = Number(kind=int if hp_type == "int" else float)
    bounds = {}
    for bound in ("min", "max"):
        if entry.get(bound) is None:
            raise ConfigError(f"{key}.{bound}", None, f"{number.describe()} (required for {hp_type})")
        number.check(f"{key}.{bound}", entry[bound])
        bounds[bound] = entry[bound]
    if bounds["min"] > bounds["max"]:
        raise ConfigError(f"{key}.min", bounds["min"], f"a value <= max ({bounds['max']})")
    step = entry.get("step")
    if step is not None:
        Number(kind=number.kind, low=0, low_exclusive=True).check(f"{key}.step", step)
    sampling = entry.get("sampling") or "linear"
    if sampling not in SAMPLINGS:
        raise ConfigError(f"{key}.sampling", sampling, f"one of {list(SAMPLINGS)}")
    if sampling != "linear" and bounds["min"] <= 0:
        raise ConfigError(f"{key}.min", bounds["min"], f"a value > 0 for {sampling} sampling")
    if default is not None:
        Number(kind=number.kind, low=bounds["min"], high=bounds["max"]).check(f"{key}.default", default)
    return Hyperparameter(
        name=name,
        type=hp_type,
        min=bounds["min"],
        max=bounds["max"],
        step=step,
        sampling=sampling,
        default=default,
    )


def _forbid(entry: Mapping, key: str, keys: tuple, hp_type: str) -> None:
    for bad in keys:
        if entry.get(bad) is not None:
            raise ConfigError(f"{key}.{bad}", entry[bad], f"no '{bad}' for a {hp_type} hyperparameter")
