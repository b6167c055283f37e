"""Method settings: one typed, range-checked spec per setting, defaults from the method's shipped config.

A protector declares the type and range of each setting (:class:`Setting`); the default values live only in the
``method_settings`` of the method's shipped YAML (:func:`shipped_defaults`: ``umed/configs/umed.yaml`` for UMed,
``umed/configs/methods/NAME.yaml`` for a baseline), which must give every setting. The budget check every
protector runs is here too. Pure Python, numpy and YAML (no torch), so the model-free methods stay light.

Example:
    >>> specs = {"patch": Setting(int, low=1), "tile": Setting(int, low=1)}
    >>> resolve_settings("lsp", specs, {"patch": 4.0})
    {'patch': 4, 'tile': 8}
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

from umed import configs
from umed.errors import ConfigError
from umed.protectors.base import Budget

__all__ = ["Setting", "shipped_config", "shipped_defaults", "resolve_settings", "check_budget"]


@dataclass(frozen=True)
class Setting:
    """One method setting: type and allowed range (JSON-native values only, so configs round-trip).

    The default is not here: it is the setting's value in the method's shipped config (:func:`shipped_defaults`).
    """

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


def shipped_config(method: str) -> str:
    """The name of a method's shipped config: ``umed`` for UMed, ``methods/NAME`` for a baseline."""
    return "umed" if method == "umed" else f"methods/{method}"


def shipped_defaults(method: str, specs: dict[str, Setting]) -> dict[str, Any]:
    """The default settings of ``method``: the ``method_settings`` of its shipped config, checked against ``specs``.

    Raises:
        ConfigError: no shipped config for the method, or one whose ``method_settings`` is not a mapping, lacks a
            setting, names an unknown one or holds an invalid value.

    Example:
        >>> shipped_defaults("ar", {"tile": Setting(int, low=4), "burn_in": Setting(int, low=2)})
        {'tile': 32, 'burn_in': 4}
    """
    name = shipped_config(method)
    defaults = configs.load(name).get("method_settings") or {}
    if not isinstance(defaults, dict):
        raise ConfigError(f"config {name}: method_settings (expected a mapping, got {defaults!r})")
    missing, unknown = sorted(set(specs) - set(defaults)), sorted(set(defaults) - set(specs))
    if missing or unknown:
        raise ConfigError(
            f"config {name}: method_settings must give every setting of '{method}' and no other "
            f"(missing {missing}, unknown {unknown})"
        )
    try:
        return {key: _coerce(method, key, defaults[key], spec) for key, spec in specs.items()}
    except ConfigError as error:
        raise ConfigError(f"config {name}: {error}") from error


def resolve_settings(method: str, specs: dict[str, Setting], given: dict[str, Any]) -> dict[str, Any]:
    """Check ``given`` against ``specs`` and return every setting (defaults from the shipped config), JSON-native.

    Raises:
        ConfigError: an unknown setting, a wrong type or a value out of range (given or shipped).
    """
    unknown = sorted(set(given) - set(specs))
    if unknown:
        raise ConfigError(f"method '{method}': unknown setting(s) {unknown} (expected some of {sorted(specs)})")
    defaults = shipped_defaults(method, specs)
    return {key: _coerce(method, key, given.get(key, defaults[key]), spec) for key, spec in specs.items()}


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
