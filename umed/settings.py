"""Settings of a protect run: a frozen dataclass, loadable from YAML, with the defaults umed ships.

Every field has a default; a YAML file (``configs/*.yaml``, ``--config FILE``) overrides any of them, and the CLI
options override the file. Budgets are in umed's normalised intensity space (see :mod:`umed.intensity`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from umed.errors import ConfigError

__all__ = ["ProtectConfig", "load_protect_config"]


@dataclass(frozen=True)
class ProtectConfig:
    """What ``umed protect`` does.

    Attributes:
        images: folder of images (or an nnU-Net / Decathlon dataset folder).
        masks: folder of label maps (``None`` for nnU-Net / Decathlon layouts).
        out: output folder; refused when inside an input folder.
        method: protector name (``umed``, ``em``, ``tap``, ``sep``, ``salm``, ``lsp``, ``ar``, ``random``).
        seed: run seed; every random choice is seeded from it plus the case or slice key.
        structure_labels: labels that form the structure to protect; ``None`` means every label > 0.
        eps_contour: L-inf bound on the contour band, normalised units (8/255 by default).
        eps_texture: L-inf bound inside the structure, normalised units.
        band_width: contour band half-width in voxels.
        target_psnr: when set, each case's perturbation is rescaled so that its whole-image PSNR (per volume for 3D,
            per image for 2D, data_range 1) is this many dB (higher only where ``eps_cap`` binds or the file's dtype
            truncates the change).
        eps_cap: the largest budget a per-case rule may give, normalised units.
        intensity_mode: ``percentile`` (robust 0.5/99.5 percentiles per volume) or ``window``.
        window: ``(low, high)`` in file units for ``intensity_mode="window"`` (e.g. CT -1000, 1000 HU).
        max_train_slices: cap on the slices used to fit the protector (the ones with the most structure first).
        fit_cases: case ids whose slices fit the protector (``None``: every case); the protector is then applied to
            every case. An audit keeps its test cases out of the fit this way.
        protector: a saved protector (``protector.json``) to apply instead of training one.
        method_settings: method-specific settings (epochs, lr, ...), passed to the protector.
    """

    images: Path
    masks: Path | None
    out: Path
    method: str = "umed"
    seed: int = 0
    structure_labels: tuple[int, ...] | None = None
    eps_contour: float = 8 / 255
    eps_texture: float = 8 / 255
    band_width: int = 3
    target_psnr: float | None = None
    eps_cap: float = 16 / 255
    intensity_mode: str = "percentile"
    window: tuple[float, float] | None = None
    max_train_slices: int = 1024
    fit_cases: tuple[str, ...] | None = None
    protector: Path | None = None
    method_settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("eps_contour", "eps_texture", "eps_cap"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise ConfigError(f"{name}: must be in (0, 1] in normalised units (got {value})")
        if self.band_width < 0:
            raise ConfigError(f"band_width: must be >= 0 voxels (got {self.band_width})")
        if self.intensity_mode not in ("percentile", "window"):
            raise ConfigError(f"intensity_mode: expected 'percentile' or 'window' (got {self.intensity_mode!r})")
        if self.intensity_mode == "window" and self.window is None:
            raise ConfigError("window: intensity_mode 'window' needs window: [low, high] in file units")
        if self.target_psnr is not None and not 20 <= self.target_psnr <= 100:
            raise ConfigError(f"target_psnr: expected 20..100 dB (got {self.target_psnr})")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able copy (paths as strings)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = str(value) if isinstance(value, Path) else (list(value) if isinstance(value, tuple) else value)
        return out


_PATH_FIELDS = {"images", "masks", "out", "protector"}
_TUPLE_FIELDS = {"structure_labels", "window", "fit_cases"}


def load_protect_config(path: Path | None = None, **overrides: Any) -> ProtectConfig:
    """Build a :class:`ProtectConfig` from an optional YAML file and keyword overrides (``None`` means "not given").

    The YAML holds any ProtectConfig field at top level; ``method_settings`` is a mapping. Unknown keys are an error
    so that a typo never silently falls back to a default.

    Raises:
        ConfigError: unreadable YAML, an unknown key, or an invalid value.
    """
    values: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise ConfigError(f"{path}: cannot read the config ({error})") from error
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of settings (got {type(loaded).__name__})")
        values.update(loaded)
    values.update({key: value for key, value in overrides.items() if value is not None})
    known = {f.name for f in dataclasses.fields(ProtectConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{path or 'settings'}: unknown setting(s) {unknown} (expected some of {sorted(known)})")
    for key in _PATH_FIELDS & set(values):
        if values[key] is not None:
            values[key] = Path(values[key])
    for key in _TUPLE_FIELDS & set(values):
        if values[key] is not None:
            values[key] = tuple(values[key])
    for key in ("eps_contour", "eps_texture", "eps_cap"):
        if isinstance(values.get(key), str):  # allow "8/255" in YAML
            values[key] = _parse_fraction(values[key], key)
    missing = [name for name in ("images", "out") if name not in values]
    if missing:
        raise ConfigError(f"{path or 'settings'}: missing required setting(s) {missing}")
    values.setdefault("masks", None)
    return ProtectConfig(**values)


def _parse_fraction(text: str, name: str) -> float:
    try:
        if "/" in text:
            numerator, denominator = text.split("/")
            return float(numerator) / float(denominator)
        return float(text)
    except ValueError as error:
        raise ConfigError(f"{name}: expected a number or a fraction like 8/255 (got {text!r})") from error
