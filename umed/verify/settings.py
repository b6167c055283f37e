"""The settings of ``umed verify`` and of the keyed mark, read from ``umed/configs/verify.yaml`` (the one place their
defaults live); command-line options override them field by field.

Example:
    >>> settings = VerifySettings.shipped()
    >>> settings.family.kind, settings.controls, round(settings.amplitude * 255)
    ('edge', 999, 12)
    >>> settings.replace(controls=99).controls
    99
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from umed.errors import ConfigError
from umed.verify.family import MarkFamily

__all__ = ["VerifySettings"]

_INTEGERS = ("controls", "per_mark", "radius", "margin", "gap", "max_per_slice", "mark_cell", "mark_cells")
_NUMBERS = ("mark_share", "tissue_threshold", "amplitude", "mark_period_min", "mark_period_max")


@dataclass(frozen=True)
class VerifySettings:
    """The mark family and share (what ``umed protect`` writes) and the probe design (what ``umed verify probes``
    builds); see ``umed/configs/verify.yaml`` for each field's meaning."""

    family: MarkFamily
    mark_share: float
    controls: int
    per_mark: int
    radius: int
    margin: int
    gap: int
    tissue_threshold: float
    max_per_slice: int
    amplitude: float

    def __post_init__(self) -> None:
        if not 0 < self.mark_share <= 1:
            raise ConfigError(f"verify settings: mark_share must be in (0, 1] (got {self.mark_share})")
        for name in ("controls", "per_mark", "radius", "max_per_slice"):
            if getattr(self, name) < 1:
                raise ConfigError(f"verify settings: {name} must be >= 1 (got {getattr(self, name)})")
        if not self.amplitude > 0:
            raise ConfigError(f"verify settings: amplitude must be > 0 (got {self.amplitude})")

    @classmethod
    def from_raw(cls, raw: dict[str, Any], *, source: str) -> VerifySettings:
        """Build from the YAML keys (fractions such as ``12/255`` allowed for numbers)."""
        from umed.settings import _parse_fraction

        expected = {"mark_kind", *_INTEGERS, *_NUMBERS}
        unknown, missing = sorted(set(raw) - expected), sorted(expected - set(raw))
        if unknown or missing:
            raise ConfigError(
                f"{source}: verify settings differ from the schema (unknown {unknown}, missing {missing})"
            )
        values: dict[str, Any] = {}
        for key in _INTEGERS:
            if isinstance(raw[key], bool) or not isinstance(raw[key], int):
                raise ConfigError(f"{source}: {key}: expected an integer (got {raw[key]!r})")
            values[key] = raw[key]
        for key in _NUMBERS:
            value = raw[key]
            values[key] = _parse_fraction(value, f"{source}: {key}") if isinstance(value, str) else float(value)
        family = MarkFamily(
            cell=values.pop("mark_cell"),
            cells=values.pop("mark_cells"),
            kind=str(raw["mark_kind"]),
            period_min=values.pop("mark_period_min"),
            period_max=values.pop("mark_period_max"),
        )
        return cls(family=family, **values)

    @classmethod
    def shipped(cls) -> VerifySettings:
        """The shipped defaults (``umed/configs/verify.yaml``)."""
        from umed import configs

        return cls.from_raw(configs.load("verify"), source="config verify")

    def replace(self, **changes: Any) -> VerifySettings:
        """A copy with some fields changed (``None`` values are ignored, as unset command-line options)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})
