"""The audit's settings: :class:`AuditConfig`, checked on creation (every bad value is a :class:`ConfigError`).

Example:
    >>> cfg = AuditConfig(clean="ct", protected="ct_prot", masks=None, victims="unet, unet3d", quick=True)
    >>> cfg.victims, cfg.native
    (('unet', 'unet3d'), True)
    >>> effective = cfg.effective()
    >>> effective.size, effective.epochs, effective.victims
    (64, 3, ('unet',))
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from umed.errors import ConfigError

__all__ = ["DEFAULT_SPLIT", "AuditConfig", "check_defaults", "shipped_defaults"]


#: The keys of ``configs/audit.yaml`` by the kind of value they take (``or null``: may be left empty).
_SCHEMA: dict[str, tuple[str, ...]] = {
    "list": ("victims", "defenses"),
    "list or null": ("test_cases", "structure_labels"),
    "integer": ("epochs", "crop", "crop3d", "seed", "batch_size", "batch_size3d", "roi_dilation"),
    "integer or null": ("size",),
    "number": ("default_split", "empty_ratio", "lr"),
    "number or null": ("split",),
    "true/false": ("quick", "validation"),
    "path or null": ("clean_cache", "key"),
}

_IS_KIND = {
    "list": lambda v: isinstance(v, (list, tuple)),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "true/false": lambda v: isinstance(v, bool),
    "path": lambda v: isinstance(v, str),
}


def shipped_defaults(name: str = "audit") -> dict[str, Any]:
    """The audit defaults of a shipped config (``audit``), checked by :func:`check_defaults`.

    Example:
        >>> shipped_defaults()["victims"]
        ('unet',)
    """
    from umed import configs

    return check_defaults(configs.load(name), source=f"config {name}")


def check_defaults(raw: dict[str, Any], *, source: str) -> dict[str, Any]:
    """Audit settings read from YAML, checked against the schema: every key present, none unknown, each value of its
    kind; lists become tuples.

    Raises:
        ConfigError: an unknown or missing key, or a value of the wrong kind (the message names ``source`` and key).

    Example:
        >>> check_defaults({**shipped_defaults(), "epochs": "many"}, source="my.yaml")
        Traceback (most recent call last):
        ...
        umed.errors.ConfigError: my.yaml: epochs: expected integer (got 'many')
    """
    keys = [key for group in _SCHEMA.values() for key in group]
    unknown, missing = sorted(set(raw) - set(keys)), sorted(set(keys) - set(raw))
    if unknown or missing:
        raise ConfigError(
            f"{source}: audit settings differ from the schema (unknown {unknown}, missing {missing}; "
            f"expected the keys {', '.join(keys)})"
        )
    for kind, group in _SCHEMA.items():
        for key in group:
            value = raw[key]
            if not (value is None and kind.endswith(" or null")) and not (
                value is not None and _IS_KIND[kind.removesuffix(" or null")](value)
            ):
                raise ConfigError(f"{source}: {key}: expected {kind} (got {value!r})")
    return {key: tuple(value) if isinstance(value, list) else value for key, value in raw.items()}


_SHIPPED = shipped_defaults()

#: Fraction of the cases held out for testing when neither ``test_cases`` nor ``split`` is given.
DEFAULT_SPLIT: float = _SHIPPED["default_split"]


def _as_tuple(value: Any) -> tuple | None:
    if value is None:
        return None
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return tuple(value)


@dataclass(frozen=True)
class AuditConfig:
    """What ``umed audit`` does; every default comes from the shipped ``umed/configs/audit.yaml``.

    Attributes:
        clean: folder of the clean images.
        protected: folder of the protected images (same case names, shapes and affines as ``clean``).
        masks: folder of label maps paired with both by case name (``None`` when ``clean`` is an nnU-Net/Decathlon
            dataset folder holding them).
        out: report folder (``report.json``, ``report.md``, figures); ``None`` writes nothing. Must not be inside an
            input folder.
        test_cases: case ids held out for testing; exclusive with ``split``.
        split: fraction of cases held out for testing, drawn with ``seed`` (:data:`DEFAULT_SPLIT` when neither is
            given).
        structure_labels: labels forming the structure; ``None`` means every label > 0.
        victims: victim names (see :data:`umed.audit.victims.VICTIM_NAMES`).
        defenses: defense names (see :data:`umed.audit.defenses.DEFENSE_NAMES`).
        epochs: training epochs per victim run.
        size: slices are resampled to ``size x size`` pixels (divisible by 16); ``None`` (default) keeps the native
            resolution and trains on ``crop`` patches.
        crop: training patch side at native resolution (rounded down to a multiple of 16, at most the slice).
        crop3d: training patch side of ``unet3d`` at native resolution (multiple of 8).
        empty_ratio: slices without structure per slice with it, in training and test sets.
        seed: run seed (split, slice choice, every victim run).
        quick: a smoke run: slices resampled to 64 (or smaller), 3 epochs, the first victim only.
        batch_size: slices per training step (slice victims).
        batch_size3d: patches per training step of ``unet3d`` (2, nnU-Net's 3d_fullres batch: with 64 patches per
            volume and epoch a larger batch leaves too few steps for the 3D victim to learn in a benchmark's epochs).
        lr: Adam learning rate of the victims.
        roi_dilation: ROI for the ROI-PSNR = structure dilated by this many voxels.
        validation: hold out :func:`umed.audit.selection.validation_split` of the training cases (one fifth, at least
            one case, drawn with ``seed``) as nnU-Net's validation fold for its selection rule; ``False`` fits on every
            training case and leaves that rule out.
        clean_cache: folder where the runs on *clean* data are kept and reused: a clean run depends only on the clean
            data and the victim settings, so audits of several protections of one dataset (a method comparison)
            train each clean victim once. Keyed by a SHA-256 of the arrays and settings; ``None`` keeps nothing.
        key: a ``umed verify`` key file (the one ``umed protect`` wrote for the protected folder): every victim is
            also tested for the mark, on probes made from the clean test cases (:mod:`umed.verify.memory`), at its
            last epoch; ``None``: prevention only. Native resolution only.
    """

    clean: Path
    protected: Path
    masks: Path | None
    out: Path | None = None
    test_cases: tuple[str, ...] | None = _SHIPPED["test_cases"]
    split: float | None = _SHIPPED["split"]
    structure_labels: tuple[int, ...] | None = _SHIPPED["structure_labels"]
    victims: tuple[str, ...] = _SHIPPED["victims"]
    defenses: tuple[str, ...] = _SHIPPED["defenses"]
    epochs: int = _SHIPPED["epochs"]
    size: int | None = _SHIPPED["size"]
    crop: int = _SHIPPED["crop"]
    crop3d: int = _SHIPPED["crop3d"]
    empty_ratio: float = _SHIPPED["empty_ratio"]
    seed: int = _SHIPPED["seed"]
    quick: bool = _SHIPPED["quick"]
    batch_size: int = _SHIPPED["batch_size"]
    batch_size3d: int = _SHIPPED["batch_size3d"]
    lr: float = _SHIPPED["lr"]
    roi_dilation: int = _SHIPPED["roi_dilation"]
    validation: bool = _SHIPPED["validation"]
    clean_cache: Path | None = _SHIPPED["clean_cache"]
    key: Path | None = _SHIPPED["key"]

    def __post_init__(self) -> None:
        from umed.audit.defenses import get_defense
        from umed.audit.victims import victim_divisor

        for name in ("clean", "protected", "masks", "out", "clean_cache", "key"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))
        object.__setattr__(self, "victims", tuple(v.strip().lower() for v in _as_tuple(self.victims) or ()))
        object.__setattr__(self, "defenses", tuple(d.strip().lower() for d in _as_tuple(self.defenses) or ()))
        object.__setattr__(self, "test_cases", _as_tuple(self.test_cases))
        if self.structure_labels is not None:
            object.__setattr__(self, "structure_labels", tuple(int(v) for v in _as_tuple(self.structure_labels) or ()))
        if not self.victims:
            raise ConfigError("victims: at least one victim is needed (expected e.g. unet)")
        if not self.defenses:
            raise ConfigError("defenses: at least one defense is needed (expected e.g. none)")
        for victim in self.victims:
            victim_divisor(victim)
        for defense in self.defenses:
            get_defense(defense)
        if self.test_cases is not None and self.split is not None:
            raise ConfigError("test_cases, split: give one of them, not both")
        if self.split is not None and not 0 < self.split < 1:
            raise ConfigError(f"split: expected a fraction in (0, 1) (got {self.split})")
        if self.epochs < 1:
            raise ConfigError(f"epochs: expected >= 1 (got {self.epochs})")
        if self.size is not None and (self.size < 16 or self.size % 16):
            raise ConfigError(f"size: expected a multiple of 16, or none for native resolution (got {self.size})")
        if self.crop < 32:
            raise ConfigError(f"crop: expected a training patch of at least 32 pixels (got {self.crop})")
        if self.crop3d < 16 or self.crop3d % 8:
            raise ConfigError(f"crop3d: expected a multiple of 8, at least 16 (got {self.crop3d})")
        if not 0 <= self.empty_ratio <= 100:
            raise ConfigError(f"empty_ratio: expected 0..100 empty slices per structure slice (got {self.empty_ratio})")
        if self.batch_size < 1 or self.batch_size3d < 1 or not self.lr > 0:
            raise ConfigError(
                f"batch_size, batch_size3d, lr: expected >= 1, >= 1 and > 0 "
                f"(got {self.batch_size}, {self.batch_size3d}, {self.lr})"
            )
        if self.roi_dilation < 0:
            raise ConfigError(f"roi_dilation: expected >= 0 voxels (got {self.roi_dilation})")

    def batch_for(self, victim: str) -> int:
        """Samples per training step of ``victim``: ``batch_size3d`` for a volume victim, else ``batch_size``.

        Example:
            >>> cfg = AuditConfig(clean="ct", protected="ct_prot", masks=None)
            >>> cfg.batch_for("unet"), cfg.batch_for("unet3d")
            (16, 2)
        """
        from umed.audit.victims import victim_spatial_dims

        return self.batch_size3d if victim_spatial_dims(victim) == 3 else self.batch_size

    def effective(self) -> AuditConfig:
        """The settings that actually run: with ``quick``, size 64 (or the given smaller size), 3 epochs and the first
        victim only."""
        if not self.quick:
            return self
        size = 64 if self.size is None else min(self.size, 64)
        return dataclasses.replace(self, size=size, epochs=min(self.epochs, 3), victims=self.victims[:1])

    @property
    def native(self) -> bool:
        """True when the victims work at the images' own resolution (no ``size``)."""
        return self.size is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able copy (paths as strings, tuples as lists)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = str(value) if isinstance(value, Path) else list(value) if isinstance(value, tuple) else value
        return out
