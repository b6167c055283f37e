"""Method settings: one typed, range-checked spec per setting, and the budget check every protector runs.

Pure Python and numpy (no torch), so the model-free methods stay light.

Example:
    >>> specs = {"patch": Setting(8, int, low=1)}
    >>> resolve_settings("lsp", specs, {"patch": 4.0})
    {'patch': 4}
    >>> resolve_settings("lsp", specs, {"patch": 0})
    Traceback (most recent call last):
    ...
    umed.errors.ConfigError: method 'lsp': setting 'patch' (expected >= 1, got 0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from umed.errors import ConfigError
from umed.protectors.base import Budget

__all__ = ["Setting", "resolve_settings", "check_budget"]


@dataclass(frozen=True)
class Setting:
    """One method setting: default, type and allowed range (JSON-native values only, so configs round-trip)."""

    default: Any
    kind: type
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None
    optional: bool = False
    low_open: bool = False


def _coerce(method: str, key: str, value: Any, spec: Setting) -> Any:
    def fail(expected: str) -> ConfigError:
        return ConfigError(f"method '{method}': setting '{key}' (expected {expected}, got {value!r})")

    if value is None:
        if spec.optional:
            return None
        raise fail(f"a {spec.kind.__name__}")
    if spec.kind is bool:
        if not isinstance(value, bool):
            raise fail("true or false")
        return value
    if spec.kind is int:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer, float)) or float(value) != int(value):
            raise fail("an integer")
        value = int(value)
    elif spec.kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise fail("a number")
        value = float(value)
        if not math.isfinite(value):
            raise fail("a finite number")
    elif spec.kind is str:
        if not isinstance(value, str):
            raise fail("a string")
        if spec.choices and value not in spec.choices:
            raise fail(f"one of {list(spec.choices)}")
        return value
    if spec.low is not None and (value < spec.low or (spec.low_open and value == spec.low)):
        raise fail(f"{'>' if spec.low_open else '>='} {spec.low}")
    if spec.high is not None and value > spec.high:
        raise fail(f"<= {spec.high}")
    return value


def resolve_settings(method: str, specs: dict[str, Setting], given: dict[str, Any]) -> dict[str, Any]:
    """Check ``given`` against ``specs`` and return every setting (defaults filled in), JSON-native.

    Raises:
        ConfigError: an unknown setting, a wrong type or a value out of range.
    """
    unknown = sorted(set(given) - set(specs))
    if unknown:
        raise ConfigError(f"method '{method}': unknown setting(s) {unknown} (expected some of {sorted(specs)})")
    return {key: _coerce(method, key, given.get(key, spec.default), spec) for key, spec in specs.items()}


def check_budget(method: str, budget: Budget) -> None:
    """Refuse a budget no method can honour.

    Raises:
        ConfigError: an epsilon that is not a finite number in (0, 1], a band width that is not an integer >= 0.
    """
    for name in ("eps_contour", "eps_texture"):
        value = getattr(budget, name)
        number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
        if not (number and math.isfinite(value) and 0 < value <= 1):
            raise ConfigError(f"method '{method}': budget {name} (expected a value in (0, 1], got {value!r})")
    width = budget.band_width
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 0:
        raise ConfigError(f"method '{method}': budget band_width (expected an integer >= 0, got {width!r})")
