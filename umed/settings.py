"""Settings of a protect run: a frozen dataclass, loadable from YAML, with the defaults umed ships.

The defaults are the shipped config ``umed`` (``umed/configs/umed.yaml``, see :mod:`umed.configs`): the dataclass
reads its numbers from that file, so the code and the shipped defaults cannot disagree. A YAML file or a shipped name
(``--config``) overrides any field, and the CLI options override the file. Budgets are in umed's normalised
intensity space (see :mod:`umed.intensity`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from umed import configs
from umed.errors import ConfigError

__all__ = ["ProtectConfig", "load_protect_config", "shipped_default"]


def _parse_fraction(text: str, name: str) -> float:
    """``"8/255"`` or ``"0.03"`` -> float."""
    try:
        if "/" in text:
            numerator, denominator = text.split("/")
            return float(numerator) / float(denominator)
        return float(text)
    except (ValueError, ZeroDivisionError) as error:
        raise ConfigError(f"{name}: expected a number or a fraction like 8/255 (got {text!r})") from error


def _number(value: Any, key: str, source: str, kind: type) -> Any:
    """``value`` as an int or float; bools and text that is not a number are a :class:`ConfigError`."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (kind is int and not float(value).is_integer())
    ):
        expected = "a whole number" if kind is int else "a number"
        raise ConfigError(f"{source}: {key}: expected {expected} (got {value!r})")
    return kind(value)


def _coerce(key: str, value: Any, source: str) -> Any:
    """Check the type of one setting and convert it (paths, tuples, fractions); ``None`` stays ``None``."""
    if value is None:
        return None
    if key in ("images", "masks", "out", "protector", "key_out"):
        return Path(value)
    if key == "mark":
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: mark: expected true or false (got {value!r})")
        return value
    if key in ("eps_contour", "eps_texture", "eps_cap"):
        return (
            _parse_fraction(value, f"{source}: {key}") if isinstance(value, str) else _number(value, key, source, float)
        )
    if key in ("seed", "band_width", "max_train_slices"):
        return _number(value, key, source, int)
    if key in ("target_psnr", "private_share"):
        return _number(value, key, source, float)
    if key in ("method", "intensity_mode"):
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {key}: expected a name (got {value!r})")
        return value
    if key == "method_settings":
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: method_settings: expected a mapping such as {{steps: 300}} (got {value!r})")
        return dict(value)
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{source}: {key}: expected a list such as {_EXAMPLES[key]} (got {value!r})")
    if key == "structure_labels":
        labels = tuple(_number(item, key, source, int) for item in value)
        if any(label < 0 for label in labels):
            raise ConfigError(f"{source}: structure_labels: labels must be >= 0 (got {list(labels)})")
        return labels
    if key == "window":
        if len(value) != 2:
            raise ConfigError(f"{source}: window: expected [low, high] (got {value!r})")
        return tuple(_number(item, key, source, float) for item in value)
    return tuple(str(item) for item in value)  # fit_cases


_EXAMPLES = {"structure_labels": "[1, 3, 4]", "window": "[-1000, 1000]", "fit_cases": "[case_a, case_b]"}


def shipped_default(name: str) -> Any:
    """The value of top-level setting ``name`` in the default config ``umed``, checked and converted as any config's
    (fractions such as ``4/255`` parsed, lists as tuples).

    Example:
        >>> shipped_default("eps_texture") == 8 / 255, shipped_default("intensity_mode")
        (True, 'percentile')

    Raises:
        ConfigError: the shipped config lacks the setting or holds an invalid value (a broken installation).
    """
    source = f"config {configs.DEFAULT}"
    shipped = configs.load(configs.DEFAULT)
    if name not in shipped:
        raise ConfigError(
            f"{source}: missing setting {name!r} (every default of ProtectConfig is in the shipped config)"
        )
    return _coerce(name, shipped[name], source)


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
        eps_contour: L-inf bound on the contour band, normalised units.
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
        method_settings: method-specific settings (epochs, lr, ...), passed to the protector (UMed's defaults are
            the ``method_settings`` of the shipped config ``umed``).
        mark: write the secret keyed mark of :mod:`umed.verify` (its family and energy share are the key's).
        private_share: a random share of the cases, drawn when the key is drawn and recorded in the key file, is kept
            private: not written to OUT, the reference of the mark-free test (``umed verify cases``). 0: none.
        key_out: the secret key file; ``None``: :func:`umed.verify.keyfile.default_key_path` (beside OUT, never in
            it). An existing key file is reused, so a resumed run, or another release, keeps the key.

    Every default is the shipped config ``umed`` (``umed/configs/umed.yaml``), read through the same checks as any
    config. ``method_settings`` defaults to no overrides: the protector then takes its own defaults, which for UMed
    are that file's ``method_settings`` (:class:`umed.protectors.UMedProtector`).
    """

    images: Path
    masks: Path | None
    out: Path
    method: str = shipped_default("method")
    seed: int = shipped_default("seed")
    structure_labels: tuple[int, ...] | None = shipped_default("structure_labels")
    eps_contour: float = shipped_default("eps_contour")
    eps_texture: float = shipped_default("eps_texture")
    band_width: int = shipped_default("band_width")
    target_psnr: float | None = shipped_default("target_psnr")
    eps_cap: float = shipped_default("eps_cap")
    intensity_mode: str = shipped_default("intensity_mode")
    window: tuple[float, float] | None = shipped_default("window")
    max_train_slices: int = shipped_default("max_train_slices")
    fit_cases: tuple[str, ...] | None = shipped_default("fit_cases")
    protector: Path | None = shipped_default("protector")
    method_settings: dict[str, Any] = field(default_factory=dict)
    mark: bool = shipped_default("mark")
    key_out: Path | None = shipped_default("key_out")
    private_share: float = shipped_default("private_share")

    def __post_init__(self) -> None:
        for name in ("eps_contour", "eps_texture", "eps_cap"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise ConfigError(f"{name}: must be in (0, 1] in normalised units (got {value})")
        if self.structure_labels is not None and any(label < 0 for label in self.structure_labels):
            raise ConfigError(f"structure_labels: labels must be >= 0 (got {list(self.structure_labels)})")
        if self.band_width < 0:
            raise ConfigError(f"band_width: must be >= 0 voxels (got {self.band_width})")
        if self.intensity_mode not in ("percentile", "window"):
            raise ConfigError(f"intensity_mode: expected 'percentile' or 'window' (got {self.intensity_mode!r})")
        if self.intensity_mode == "window" and self.window is None:
            raise ConfigError("window: intensity_mode 'window' needs window: [low, high] in file units")
        if not 0 <= self.private_share < 1:
            raise ConfigError(f"private_share: expected a fraction in [0, 1) (got {self.private_share})")
        if self.target_psnr is not None and not 20 <= self.target_psnr <= 100:
            raise ConfigError(f"target_psnr: expected 20..100 dB (got {self.target_psnr})")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able copy (paths as strings)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = (
                str(value) if isinstance(value, Path) else (list(value) if isinstance(value, tuple) else value)
            )
        return out


def load_protect_config(path: str | Path | None = None, **overrides: Any) -> ProtectConfig:
    """Build a :class:`ProtectConfig` from an optional config and keyword overrides (``None`` means "not given").

    ``path`` is a YAML file or the name of a shipped config (``umed``, ``brats_tumour_core``, ``isbi_membranes``,
    ``fast``, ``methods/em``, ...; see :mod:`umed.configs`); without it the shipped default applies (the dataclass's
    defaults are that file). The YAML holds any ProtectConfig field at top level; ``method_settings`` is a mapping.
    Unknown keys and values of the wrong type are an error, so that a typo never silently falls back to a default.

    Raises:
        ConfigError: unreadable YAML, an unknown name or key, or an invalid value (the message names the setting).
    """
    values: dict[str, Any] = {}
    source = "settings"
    if path is not None:
        source, content = configs.resolve(path)
        try:
            loaded = yaml.safe_load(content) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{source}: cannot read the config ({error})") from error
        if not isinstance(loaded, dict):
            raise ConfigError(f"{source}: expected a mapping of settings (got {type(loaded).__name__})")
        values.update(loaded)
    values.update({key: value for key, value in overrides.items() if value is not None})
    known = {f.name for f in dataclasses.fields(ProtectConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown setting(s) {unknown} (expected some of {sorted(known)})")
    missing = [name for name in ("images", "out") if name not in values]
    if missing:
        raise ConfigError(f"{source}: missing required setting(s) {missing}")
    values.setdefault("masks", None)
    values = {key: _coerce(key, value, source) for key, value in values.items()}
    return ProtectConfig(**values)
