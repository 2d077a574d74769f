"""Hyperparameters described as data, so the API can list, pin and narrow them without Keras.

A space's HyperModel declares each one on KerasTuner's ``HyperParameters`` with
:meth:`Hyperparameter.declare`; the API shows :meth:`Hyperparameter.describe` and checks a
request's restrictions with :meth:`Hyperparameter.restricted`.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from nas.core.errors import RestrictionError

if TYPE_CHECKING:
    import keras_tuner

Value = bool | int | float | str
Kind = Literal["int", "float", "choice", "boolean", "fixed"]


@dataclass(frozen=True)
class Restriction:
    """What a request asks of one hyperparameter: one of ``fixed``, ``values``, ``min``/``max``."""

    fixed: Value | None = None
    values: tuple[Value, ...] | None = None
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class Hyperparameter:
    """One searchable choice: its kind, default, bounds or choices, and when it is active.

    ``active_when`` is ``(parent, values)``: the hyperparameter exists only in models whose
    ``parent`` takes one of ``values`` (a KerasTuner conditional scope).
    """

    name: str
    kind: Kind
    default: Value
    description: str
    choices: tuple[Value, ...] = ()
    min: float | None = None
    max: float | None = None
    step: float | None = None
    log: bool = False
    active_when: tuple[str, tuple[Value, ...]] | None = None

    def describe(self) -> dict[str, Any]:
        """The hyperparameter as ``GET /v1/spaces`` shows it."""
        described: dict[str, Any] = {
            "name": self.name,
            "type": self.kind,
            "default": self.default,
            "description": self.description,
        }
        if self.kind in ("choice", "boolean"):
            described["choices"] = list(self.choices) if self.kind == "choice" else [False, True]
        if self.kind in ("int", "float"):
            described |= {"min": self.min, "max": self.max, "step": self.step}
            if self.kind == "float":
                described["sampling"] = "log" if self.log else "linear"
        if self.active_when is not None:
            parent, values = self.active_when
            described["active_when"] = {"hyperparameter": parent, "values": list(values)}
        return described

    def restricted(self, restriction: Restriction) -> Hyperparameter:
        """This hyperparameter pinned or narrowed as asked.

        Raises:
            RestrictionError: a value, subset or range the hyperparameter does not allow.
        """
        if restriction.fixed is not None:
            value = self._allowed(restriction.fixed)
            return replace(self, kind="fixed", default=value, choices=(value,))
        if restriction.values is not None:
            values = tuple(self._allowed(value) for value in restriction.values)
            if len(set(values)) != len(values):
                raise RestrictionError("values must be distinct")
            if len(values) == 1:
                return replace(self, kind="fixed", default=values[0], choices=values)
            default = self.default if self.default in values else values[0]
            return replace(self, kind="choice", default=default, choices=values)
        return self._within(restriction.min, restriction.max)

    def declare(self, hp: keras_tuner.HyperParameters) -> Any:
        """Declare it on ``hp`` and return the value of this model (None when inactive)."""
        scope = contextlib.nullcontext()
        if self.active_when is not None:
            parent, values = self.active_when
            scope = hp.conditional_scope(parent, list(values))
        with scope:
            if self.kind == "fixed":
                return hp.Fixed(self.name, self.default)
            if self.kind == "boolean":
                return hp.Boolean(self.name, default=self.default)
            if self.kind == "choice":
                return hp.Choice(self.name, list(self.choices), default=self.default)
            if self.kind == "int":
                return hp.Int(
                    self.name, int(self.min), int(self.max), step=self.step, default=self.default
                )
            return hp.Float(
                self.name,
                self.min,
                self.max,
                step=self.step,
                sampling="log" if self.log else "linear",
                default=self.default,
            )

    def _allowed(self, value: Value) -> Value:
        """``value`` in this hyperparameter's own type, if the space holds it."""
        if self.kind == "boolean":
            if not isinstance(value, bool):
                raise RestrictionError(f"{value!r} is not a boolean")
            return value
        if self.kind == "choice":
            matches = [choice for choice in self.choices if _same(choice, value)]
            if not matches:
                raise RestrictionError(f"{value!r} is not one of {list(self.choices)}")
            return matches[0]
        number = self._number(value)
        if not self.min <= number <= self.max:
            raise RestrictionError(f"{value!r} is outside [{self.min}, {self.max}]")
        if self.kind == "int" and (number - self.min) % (self.step or 1):
            raise RestrictionError(f"{value!r} is not {self.min} plus a multiple of {self.step}")
        return number

    def _within(self, low: float | None, high: float | None) -> Hyperparameter:
        if self.kind not in ("int", "float"):
            raise RestrictionError(f"min and max narrow numbers; {self.name} is a {self.kind}")
        low = self.min if low is None else self._allowed(low)
        high = self.max if high is None else self._allowed(high)
        if low > high:
            raise RestrictionError(f"min {low} is above max {high}")
        if low == high:
            return replace(self, kind="fixed", default=low, choices=(low,))
        if self.step is not None and self.kind == "float":
            # KerasTuner's stepped floats count steps from min; keep the space's grid.
            low = self.min + math.ceil((low - self.min) / self.step - 1e-9) * self.step
        default = min(max(self.default, low), high)
        if self.kind == "int":
            default = low + (default - low) // (self.step or 1) * (self.step or 1)
        return replace(self, min=low, max=high, default=default)

    def _number(self, value: Value) -> float | int:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RestrictionError(f"{value!r} is not a number")
        if self.kind == "int":
            if not float(value).is_integer():
                raise RestrictionError(f"{value!r} is not a whole number")
            return int(value)
        return float(value)


def _same(choice: Value, value: Value) -> bool:
    # JSON has no separate int and float, but booleans are not numbers here.
    if isinstance(choice, bool) or isinstance(value, bool):
        return choice is value
    return choice == value and isinstance(value, str) == isinstance(choice, str)
