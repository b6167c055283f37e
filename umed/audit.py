"""``umed audit``: does a protected dataset stop a segmentation network from learning, and at what visual cost?

The audit pairs a clean dataset with its protected version (same case names and geometry) and the label maps, then:

1. **Imperceptibility**, per case, in umed's normalised space: each case's percentile mapping
   (:func:`umed.intensity.fit_mapping`) is fitted on the *clean* image and the *same* mapping is applied to the
   protected image, so both live in one space with ``data_range = 1``. PSNR over the whole image (per volume for 3D,
   per image for 2D) and inside the ROI (the structure dilated by ``roi_dilation`` voxels, Euclidean), SSIM, and the
   largest change in /255.
2. **Threshold floor**: the best single intensity threshold fitted on the protected training slices and scored on the
   clean test slices (:func:`umed.metrics.threshold_floor`). A victim trained on protected data that still reaches it
   is "not protected beyond what a threshold finds".
3. **Victims**: for every victim and defense, the victim is trained twice with the same seed and settings, on the
   protected and on the clean training cases, and scored every epoch on the clean test cases (Dice over all test
   slices jointly, HD95 in mm). Test cases are never used for training. Three model-selection rules are reported
   (:mod:`umed.selection`): the oracle best epoch on the clean test cases, the last epoch, and nnU-Net's rule (best
   EMA of the Dice on a validation split of the training cases, which are protected for the protected victim; the
   validation cases are held out from fitting). For ``mix``, a third victim trained on the clean half of the
   training cases alone is the reference: protection means the protected half adds nothing (:mod:`umed.verdict`).

Training data for the slice victims are the axial slices (last axis) holding structure, plus ``empty_ratio`` as many
slices without it (drawn per case with the run seed). By default the victims work at the images' **native resolution**,
as nnU-Net does for data already at a common spacing: they train on random ``crop x crop`` patches (every other one
centred on structure, one per slice per epoch) and are tested on the full slices (edge-padded to a multiple of 16).
With ``size`` set, slices are resampled to ``size x size`` instead (area averaging for images, nearest for labels),
which is a low-pass filter: the ``downsample`` defense measures that choice of the data user beside the others. The
``unet3d`` victim trains on random native ``crop3d^3`` patches (64 per volume and epoch) and is tested by
sliding-window inference on the test volumes cropped to their non-background bounding box (with ``size`` set: whole
volumes resampled to ``(size/2)^3``, ``(size/4)^3`` patches). Test slices are chosen the same way from the clean test cases.
"""

from __future__ import annotations

import dataclasses
import math
import platform
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from umed.case import Case
from umed.errors import ConfigError, GeometryError, InputError
from umed.metrics import ThresholdFloor, max_abs_change, psnr, ssim, threshold_floor
from umed.audit_runs import CleanCache, VictimData, audit_run
from umed.selection import validation_split
from umed.verdict import (INCONCLUSIVE, NOT_PROTECTED, PARTLY_PROTECTED, PROTECTED, floor_verdict, mix_gains,
                          mix_verdict, rules_at_or_above)
from umed.victims import VictimRun

if TYPE_CHECKING:
    from umed.protectors.base import ProgressCallback

__all__ = ["AuditConfig", "AuditReport", "AuditRun", "CaseAudit", "ExampleSlice", "INCONCLUSIVE", "NOT_PROTECTED",
           "PARTLY_PROTECTED", "PROTECTED", "run_audit"]


_PATCHES_PER_VOLUME = 64  # native unet3d: random patches per training volume and epoch (every other on structure)


def _as_tuple(value: Any) -> tuple | None:
    if value is None:
        return None
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return tuple(value)


@dataclass(frozen=True)
class AuditConfig:
    """What ``umed audit`` does.

    Attributes:
        clean: folder of the clean images.
        protected: folder of the protected images (same case names, shapes and affines as ``clean``).
        masks: folder of label maps paired with both by case name (``None`` when ``clean`` is an nnU-Net/Decathlon
            dataset folder holding them).
        out: report folder (``report.json``, ``report.md``, figures); ``None`` writes nothing. Must not be inside an
            input folder.
        test_cases: case ids held out for testing; exclusive with ``split``.
        split: fraction of cases held out for testing, drawn with ``seed`` (default 0.33 when neither is given).
        structure_labels: labels forming the structure; ``None`` means every label > 0.
        victims: victim names (see :data:`umed.victims.VICTIM_NAMES`).
        defenses: defense names (see :data:`umed.defenses.DEFENSE_NAMES`).
        epochs: training epochs per victim run.
        size: slices are resampled to ``size x size`` pixels (divisible by 16); ``None`` (default) keeps the native
            resolution and trains on ``crop`` patches.
        crop: training patch side at native resolution (rounded down to a multiple of 16, at most the slice).
        crop3d: training patch side of ``unet3d`` at native resolution (multiple of 8).
        empty_ratio: slices without structure per slice with it, in training and test sets.
        seed: run seed (split, slice choice, every victim run).
        quick: a smoke run: slices resampled to 64 (or smaller), 3 epochs, the first victim only.
        batch_size: slices per training step.
        lr: Adam learning rate of the victims.
        roi_dilation: ROI for the ROI-PSNR = structure dilated by this many voxels.
        validation: hold out :func:`umed.selection.validation_split` of the training cases (one fifth, at least one
            case, drawn with ``seed``) as nnU-Net's validation fold for its selection rule; ``False`` fits on every
            training case and leaves that rule out.
        clean_cache: folder where the runs on *clean* data are kept and reused: a clean run depends only on the clean
            data and the victim settings, so audits of several protections of one dataset (a method comparison)
            train each clean victim once. Keyed by a SHA-256 of the arrays and settings; ``None`` keeps nothing.
    """

    clean: Path
    protected: Path
    masks: Path | None
    out: Path | None = None
    test_cases: tuple[str, ...] | None = None
    split: float | None = None
    structure_labels: tuple[int, ...] | None = None
    victims: tuple[str, ...] = ("unet",)
    defenses: tuple[str, ...] = ("none",)
    epochs: int = 15
    size: int | None = None
    crop: int = 128
    crop3d: int = 48
    empty_ratio: float = 1.0
    seed: int = 0
    quick: bool = False
    batch_size: int = 16
    lr: float = 1e-3
    roi_dilation: int = 3
    validation: bool = True
    clean_cache: Path | None = None

    def __post_init__(self) -> None:
        from umed.defenses import get_defense
        from umed.victims import victim_divisor

        for name in ("clean", "protected", "masks", "out", "clean_cache"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))
        object.__setattr__(self, "victims", tuple(v.strip().lower() for v in _as_tuple(self.victims) or ()))
        object.__setattr__(self, "defenses", tuple(d.strip().lower() for d in _as_tuple(self.defenses) or ()))
        object.__setattr__(self, "test_cases", _as_tuple(self.test_cases))
        if self.structure_labels is not None:
            object.__setattr__(self, "structure_labels", tuple(int(v) for v in _as_tuple(self.structure_labels)))
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
        if self.batch_size < 1 or not self.lr > 0:
            raise ConfigError(f"batch_size, lr: expected >= 1 and > 0 (got {self.batch_size}, {self.lr})")
        if self.roi_dilation < 0:
            raise ConfigError(f"roi_dilation: expected >= 0 voxels (got {self.roi_dilation})")

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


@dataclass(frozen=True)
class CaseAudit:
    """Imperceptibility of one case, in normalised units (``data_range`` 1; changes also in /255).

    Attributes:
        case_id: the case.
        role: ``"train"`` or ``"test"``.
        psnr: dB over the whole image (per volume / per image); ``inf`` when unchanged.
        psnr_roi: dB inside the ROI (structure dilated by ``roi_dilation``); ``nan`` without structure.
        ssim: mean SSIM over the whole image.
        max_abs_change_255: largest |protected - clean|, in /255.
        max_abs_change_outside_roi_255: largest change outside the ROI, in /255.
        changed_fraction: fraction of voxels that changed at all.
        roi_voxels: voxels in the ROI.
        structure_slices: slices holding structure (1 for a 2D image with structure).
        mapping: the clean image's intensity mapping (file units).
    """

    case_id: str
    role: str
    psnr: float
    psnr_roi: float
    ssim: float
    max_abs_change_255: float
    max_abs_change_outside_roi_255: float
    changed_fraction: float
    roi_voxels: int
    structure_slices: int
    mapping: dict[str, Any]


@dataclass(frozen=True)
class ExampleSlice:
    """One slice for the report's figure, at native resolution, normalised units.

    Attributes:
        case_id: the case.
        index: slice index along the last axis (0 for 2D images).
        clean: ``(H, W)`` float32.
        protected: ``(H, W)`` float32.
        structure: ``(H, W)`` bool.
    """

    case_id: str
    index: int
    clean: np.ndarray = field(repr=False)
    protected: np.ndarray = field(repr=False)
    structure: np.ndarray = field(repr=False)


@dataclass
class AuditRun:
    """One victim under one defense, trained on clean and on protected data with the same seed and settings.

    Attributes:
        clean_half: ``mix`` only: the victim trained on the clean half of the training cases alone (the cases
            ``mix`` made clean), the reference the mixed victim is compared with.
    """

    victim: str
    defense: str
    clean: VictimRun
    protected: VictimRun
    floor: float
    clean_half: VictimRun | None = None

    @property
    def mix_gain(self) -> dict[str, float] | None:
        """``mix``: Dice gain of the mixed victim over the clean-half victim per selection rule; else ``None``."""
        return mix_gains(self.protected, self.clean_half) if self.clean_half is not None else None

    @property
    def verdict(self) -> str:
        """Plain-language result (:mod:`umed.verdict`): against the clean-half victim for ``mix``, else against the
        threshold floor under all three selection rules."""
        if self.clean_half is not None:
            return mix_verdict(self.mix_gain)
        return floor_verdict(self.clean, self.protected, self.floor)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary."""
        out = {
            "victim": self.victim,
            "defense": self.defense,
            "verdict": self.verdict,
            "floor_verdict": floor_verdict(self.clean, self.protected, self.floor),
            "rules_at_or_above_floor": rules_at_or_above(self.protected, self.floor),
            "dice_drop_best": self.clean.best_dice - self.protected.best_dice,
            "dice_drop_last": self.clean.last_dice - self.protected.last_dice,
            "dice_drop_nnunet": self.clean.nnunet_dice - self.protected.nnunet_dice,
            "clean": self.clean.to_dict(),
            "protected": self.protected.to_dict(),
        }
        if self.clean_half is not None:
            out["clean_half"] = self.clean_half.to_dict()
            out["mix_gain"] = self.mix_gain
        return out


@dataclass
class AuditReport:
    """Everything :func:`run_audit` found; :func:`umed.report.write_report` turns it into files.

    Attributes:
        config: the effective settings (after ``quick``).
        train_cases: case ids trained on.
        test_cases: case ids tested on (clean images only).
        cases: imperceptibility per case (all cases).
        imperceptibility: means over cases (finite values), with the count of unchanged cases.
        floor: threshold floor fitted on the protected training slices, scored on the clean test slices.
        floor_clean: the same fitted on the clean training slices (how much the protection moved the threshold).
        runs: one :class:`AuditRun` per victim and defense.
        data: slice counts, sizes and the ROI definition.
        examples: up to 3 slices for the figure.
        test_labels: the test labels at victim resolution ``(M, size, size)`` (structure labels, others 0), the
            targets of every run's ``predictions``; ``test_labels_3d`` likewise for ``unet3d``.
        versions: package versions.
        seconds: wall time.
        notes: caveats worth reading (skipped cases, ...).
        paths: files written (filled by :func:`umed.report.write_report`).
    """

    config: AuditConfig
    train_cases: list[str]
    test_cases: list[str]
    cases: list[CaseAudit]
    imperceptibility: dict[str, float]
    floor: ThresholdFloor
    floor_clean: ThresholdFloor
    runs: list[AuditRun]
    data: dict[str, Any]
    examples: list[ExampleSlice] = field(repr=False)
    test_labels: np.ndarray = field(repr=False)
    test_labels_3d: np.ndarray | None = field(default=None, repr=False)
    versions: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    paths: dict[str, Path] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (no arrays; non-finite floats as ``None``, ``inf`` PSNR as the string ``"inf"``)."""

        def num(v: Any) -> Any:
            if isinstance(v, float):
                if math.isinf(v) and v > 0:
                    return "inf"
                return v if math.isfinite(v) else None
            return v

        return {
            "umed_audit": 1,
            "settings": self.config.to_dict(),
            "versions": self.versions,
            "seconds": round(self.seconds, 1),
            "train_cases": self.train_cases,
            "test_cases": self.test_cases,
            "data": self.data,
            "imperceptibility": {
                "mean": {k: num(v) for k, v in self.imperceptibility.items()},
                "cases": [{k: num(v) for k, v in dataclasses.asdict(c).items()} for c in self.cases],
            },
            "threshold_floor": _floor_dict(self.floor),
            "threshold_floor_clean_train": _floor_dict(self.floor_clean),
            "runs": [run.to_dict() for run in self.runs],
            "notes": self.notes,
        }


def _floor_dict(floor: ThresholdFloor) -> dict[str, Any]:
    return {"threshold": floor.threshold, "polarity": floor.polarity, "dice": floor.dice, "train_dice": floor.train_dice}


from umed.io.provenance import package_versions  # noqa: E402 (one package list for every record)


# ------------------------------------------------------------------------------------------------------- loading


@dataclass
class _Loaded:
    """One case after loading: normalised clean and protected images, structure labels, spacing (the arrays are
    dropped, set to ``None``, once the slices are cut)."""

    case_id: str
    clean: np.ndarray | None  # (X, Y, Z) or (H, W) float32, normalised
    protected: np.ndarray | None
    labels: np.ndarray | None  # structure labels kept, others 0, same shape
    spacing: tuple[float, ...]
    audit: CaseAudit | None = None


def _pair_cases(cfg: AuditConfig) -> list[tuple[Case, Path]]:
    """``(clean case with mask, protected image path)`` for every case, sorted by case id."""
    from umed.io import discover_cases

    clean = discover_cases(cfg.clean, cfg.masks)
    protected = {case.case_id: case for case in discover_cases(cfg.protected, None)}
    clean_ids = {case.case_id for case in clean}
    missing = sorted(clean_ids - set(protected))
    extra = sorted(set(protected) - clean_ids)
    if missing or extra:
        raise InputError(
            f"{cfg.protected}: protected cases differ from the clean cases in {cfg.clean} "
            f"(expected the same case names; missing {missing[:5]}, unexpected {extra[:5]})"
        )
    return [(case, protected[case.case_id].image_path) for case in clean]


def _split(ids: list[str], cfg: AuditConfig) -> tuple[list[str], list[str]]:
    if cfg.test_cases is not None:
        unknown = sorted(set(cfg.test_cases) - set(ids))
        if unknown:
            raise ConfigError(f"test_cases: unknown case ids {unknown[:5]} (expected some of {ids[:10]})")
        test = sorted(set(cfg.test_cases))
    else:
        if len(ids) < 2:
            raise ConfigError(f"split: need at least 2 cases to hold some out for testing (got {len(ids)})")
        fraction = 0.33 if cfg.split is None else cfg.split
        n_test = min(max(1, int(round(fraction * len(ids)))), len(ids) - 1)
        rng = np.random.default_rng(cfg.seed)
        test = sorted(ids[i] for i in rng.permutation(len(ids))[:n_test])
    train = [case_id for case_id in ids if case_id not in test]
    if not train:
        raise ConfigError(f"test_cases: every case is a test case (expected at least one training case, got {len(ids)} test)")
    return train, test


def _roi(structure: np.ndarray, dilation: int) -> np.ndarray:
    from scipy import ndimage

    if dilation == 0 or not structure.any():
        return structure.copy()
    # the distance transform only inside the structure's bounding box grown by the dilation (tumours are small)
    where = np.argwhere(structure)
    low = np.maximum(where.min(axis=0) - dilation - 1, 0)
    high = np.minimum(where.max(axis=0) + dilation + 2, structure.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(low, high))
    roi = np.zeros(structure.shape, bool)
    roi[box] = ndimage.distance_transform_edt(~structure[box]) <= dilation
    return roi


def _load(case: Case, protected_path: Path, role: str, cfg: AuditConfig) -> _Loaded:
    from umed.intensity import fit_mapping
    from umed.io import load_case, validate_case
    from umed.regions import foreground

    image, meta, labels, _ = validate_case(case)
    protected, pmeta = load_case(protected_path)
    if protected.shape != image.shape:
        raise GeometryError(
            f"{protected_path}: protected image differs in shape from {case.image_path} "
            f"(expected {image.shape}, got {protected.shape})"
        )
    if not np.allclose(np.asarray(pmeta.affine), np.asarray(meta.affine), atol=1e-3):
        raise GeometryError(f"{protected_path}: protected image differs in affine from {case.image_path} (expected the same)")
    mapping = fit_mapping(image, mode="percentile", percentiles=(0.5, 99.5))
    clean_u, prot_u = mapping.to_unit(image), mapping.to_unit(protected)
    structure = foreground(labels, cfg.structure_labels)
    roi = _roi(structure, cfg.roi_dilation)
    diff = np.abs(prot_u.astype(np.float64) - clean_u)
    n_slices = 1 if image.ndim == 2 else int(structure.reshape(-1, structure.shape[-1]).any(axis=0).sum())
    audit = CaseAudit(
        case_id=case.case_id,
        role=role,
        psnr=psnr(clean_u, prot_u, data_range=1.0),
        psnr_roi=psnr(clean_u, prot_u, data_range=1.0, mask=roi),
        ssim=ssim(clean_u, prot_u, data_range=1.0),
        max_abs_change_255=max_abs_change(clean_u, prot_u) * 255,
        max_abs_change_outside_roi_255=max_abs_change(clean_u, prot_u, mask=~roi) * 255,
        changed_fraction=float(np.count_nonzero(diff > 0) / diff.size),
        roi_voxels=int(roi.sum()),
        structure_slices=n_slices if structure.any() else 0,
        mapping=mapping.to_dict(),
    )
    kept = np.where(structure, labels, 0).astype(np.int16)
    return _Loaded(case.case_id, clean_u, prot_u, kept, tuple(float(s) for s in meta.spacing), audit)


# ------------------------------------------------------------------------------------------------------- sampling


def _case_rng(seed: int, case_id: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(case_id.encode("utf-8"))])


def _slice_indices(item: _Loaded, cfg: AuditConfig) -> list[int]:
    """Slices (last axis) the slice victims see: all with structure, plus ``empty_ratio`` as many without."""
    if item.clean.ndim == 2:
        return [0]
    has = item.labels.reshape(-1, item.labels.shape[-1]).any(axis=0)
    flat = item.clean.reshape(-1, item.clean.shape[-1])
    varied = flat.max(axis=0) > flat.min(axis=0)
    structure = np.flatnonzero(has)
    candidates = np.flatnonzero(~has & varied)
    n_empty = min(len(candidates), int(round(cfg.empty_ratio * len(structure))))
    empty = _case_rng(cfg.seed, item.case_id).choice(candidates, size=n_empty, replace=False) if n_empty else []
    return sorted(int(z) for z in [*structure, *empty])


def _resample(stack: np.ndarray, size: Sequence[int], *, labels: bool) -> np.ndarray:
    """``(N, *spatial)`` to ``(N, *size)``: area averaging for images, nearest for labels."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(stack, dtype=np.float32))[:, None]
    if tuple(t.shape[2:]) == tuple(size):
        out = t
    elif labels:
        out = F.interpolate(t, size=tuple(size), mode="nearest-exact")
    else:
        out = F.interpolate(t, size=tuple(size), mode="area")
    out = out[:, 0].numpy()
    return np.rint(out).astype(np.int16) if labels else out.astype(np.float32)


@dataclass
class _SliceSet:
    clean: np.ndarray  # (N, size, size)
    protected: np.ndarray
    labels: np.ndarray
    groups: np.ndarray  # (N,) case index
    spacing: np.ndarray  # (N, 2) mm


def _pad_to(stack: np.ndarray, multiple: int) -> np.ndarray:
    """``(N, H, W)`` edge-padded at the far end of each axis up to a multiple of ``multiple`` (labels: pad with 0)."""
    pad = [(0, 0)] + [(0, (-n) % multiple) for n in stack.shape[1:]]
    if not any(p for _, p in pad):
        return stack
    if np.issubdtype(stack.dtype, np.integer):
        return np.pad(stack, pad, mode="constant")
    return np.pad(stack, pad, mode="edge")


def _slices(items: list[_Loaded], cfg: AuditConfig) -> _SliceSet:
    """The victims' slices of ``items``: resampled to ``cfg.size`` or, natively, padded to a multiple of 16."""
    clean, protected, labels, groups, spacing = [], [], [], [], []
    shapes = {item.clean.shape[:2] for item in items}
    if cfg.native and len(shapes) > 1:
        raise ConfigError(
            f"{cfg.clean}: slices differ in size between cases ({sorted(shapes)[:4]}); native-resolution victims need "
            "one size (pass --size to resample every slice to SIZE x SIZE)"
        )
    for k, item in enumerate(items):
        index = _slice_indices(item, cfg)
        if not index:
            continue
        if item.clean.ndim == 2:
            c, p, y = item.clean[None], item.protected[None], item.labels[None]
        else:
            c, p, y = (np.moveaxis(a[..., index], -1, 0) for a in (item.clean, item.protected, item.labels))
        shape = c.shape[1:]
        if cfg.native:
            clean.append(_pad_to(c.astype(np.float32), 16))
            protected.append(_pad_to(p.astype(np.float32), 16))
            labels.append(_pad_to(y.astype(np.int16), 16))
            pixel = [item.spacing[a] for a in range(2)]
        else:
            clean.append(_resample(c, (cfg.size, cfg.size), labels=False))
            protected.append(_resample(p, (cfg.size, cfg.size), labels=False))
            labels.append(_resample(y, (cfg.size, cfg.size), labels=True))
            pixel = [item.spacing[a] * shape[a] / cfg.size for a in range(2)]
        groups.append(np.full(len(index), k))
        spacing.append(np.tile(pixel, (len(index), 1)))
    if not clean:
        side = cfg.size or 16
        empty = np.zeros((0, side, side), np.float32)
        return _SliceSet(empty, empty, empty.astype(np.int16), np.zeros(0, int), np.zeros((0, 2)))
    return _SliceSet(*(np.concatenate(a) for a in (clean, protected, labels, groups, spacing)))


def _volumes(items: list[_Loaded], side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(clean, protected, labels, spacing)``: every volume resampled to ``side^3`` for the 3D victim."""
    size = (side, side, side)
    clean = np.stack([_resample(i.clean[None], size, labels=False)[0] for i in items])
    protected = np.stack([_resample(i.protected[None], size, labels=False)[0] for i in items])
    labels = np.stack([_resample(i.labels[None], size, labels=True)[0] for i in items])
    spacing = np.array([[i.spacing[a] * i.clean.shape[a] / side for a in range(3)] for i in items])
    return clean, protected, labels, spacing


def _volumes_native(
    items: list[_Loaded], minimum: int, multiple: int = 8
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(clean, protected, labels, spacing)`` at native resolution for the 3D victim: each volume cropped to the
    bounding box of its non-background voxels (above the clean image's minimum, and every structure voxel), then all
    padded (edge values; labels 0) to one shape, a multiple of ``multiple`` and at least ``minimum`` per axis."""
    boxes = []
    for item in items:
        inside = (item.clean > item.clean.min()) | (item.labels > 0)
        where = np.argwhere(inside) if inside.any() else np.argwhere(np.ones(inside.shape, bool))
        boxes.append(tuple(slice(int(a), int(b) + 1) for a, b in zip(where.min(axis=0), where.max(axis=0))))
    shape = [max(b[a].stop - b[a].start for b in boxes) for a in range(3)]
    shape = [max(n + (-n) % multiple, minimum) for n in shape]

    def fit(volume: np.ndarray, box: tuple[slice, ...]) -> np.ndarray:
        part = volume[box]
        pad = [(0, s - n) for s, n in zip(shape, part.shape)]
        if np.issubdtype(part.dtype, np.integer):
            return np.pad(part, pad, mode="constant")
        return np.pad(part, pad, mode="edge").astype(np.float32)

    clean = np.stack([fit(i.clean, b) for i, b in zip(items, boxes)])
    protected = np.stack([fit(i.protected, b) for i, b in zip(items, boxes)])
    labels = np.stack([fit(i.labels, b) for i, b in zip(items, boxes)])
    spacing = np.array([list(i.spacing[:3]) for i in items], dtype=np.float64)
    return clean, protected, labels, spacing


def _examples(items: list[_Loaded], count: int = 3) -> list[ExampleSlice]:
    """Up to ``count`` slices with structure from the training case holding the most (2D: the images holding most)."""
    with_structure = [i for i in items if i.labels.any()]
    if not with_structure:
        return []
    if with_structure[0].clean.ndim == 2:
        chosen = sorted(with_structure, key=lambda i: -int(np.count_nonzero(i.labels)))[:count]
        return [ExampleSlice(i.case_id, 0, i.clean, i.protected, i.labels > 0) for i in chosen]
    item = max(with_structure, key=lambda i: int(np.count_nonzero(i.labels)))
    zs = np.flatnonzero(item.labels.reshape(-1, item.labels.shape[-1]).any(axis=0))
    picks = sorted({int(zs[int(round(q * (len(zs) - 1)))]) for q in np.linspace(0.25, 0.75, count)})
    return [
        ExampleSlice(item.case_id, z, item.clean[..., z], item.protected[..., z], item.labels[..., z] > 0) for z in picks
    ]


def _patch2d(cfg: AuditConfig, shape: Sequence[int]) -> tuple[int, int] | None:
    """Training patch of the slice victims: ``crop`` (multiple of 16, within the slice) natively, else none."""
    if not cfg.native:
        return None
    side = min(cfg.crop, *shape)
    side -= side % 16
    if side >= min(shape):
        return None  # the slice itself is no larger than the patch
    return (side, side)


def _patch3d(cfg: AuditConfig, shape: Sequence[int], side: int | None) -> tuple[int, int, int]:
    """Training patch of ``unet3d``: ``crop3d`` natively (within the volume), else ``(size/4)^3`` (at least 16)."""
    if not cfg.native:
        return (max(side // 2, 16),) * 3
    return tuple(max(16, min(cfg.crop3d, n - n % 8)) for n in shape)


def _join(a: _SliceSet, b: _SliceSet | None) -> _SliceSet:
    """Two slice sets as one (``b`` may be ``None``)."""
    if b is None:
        return a
    return _SliceSet(*(np.concatenate([getattr(a, f.name), getattr(b, f.name)]) for f in dataclasses.fields(_SliceSet)))


def _victim_data_2d(cfg: AuditConfig, train: _SliceSet, test: _SliceSet, val: _SliceSet | None) -> VictimData:
    patch = _patch2d(cfg, train.labels.shape[1:])
    return VictimData(
        train.clean, train.protected, train.labels, train.groups, test.clean, test.labels, test.spacing,
        val.clean if val else None, val.protected if val else None, val.labels if val else None,
        patch, len(train.labels) if patch else None,
    )


def _victim_data_3d(cfg: AuditConfig, fit: list[_Loaded], test: list[_Loaded], val: list[_Loaded],
                    side: int | None) -> VictimData:
    if cfg.native:
        (c_x, p_x, y, _), (t_x, _, t_y, t_sp) = _volumes_native(fit, cfg.crop3d), _volumes_native(test, cfg.crop3d)
        v = _volumes_native(val, cfg.crop3d) if val else None
    else:
        (c_x, p_x, y, _), (t_x, _, t_y, t_sp) = _volumes(fit, side), _volumes(test, side)
        v = _volumes(val, side) if val else None
    return VictimData(
        c_x, p_x, y, np.arange(len(c_x)), t_x, t_y, t_sp, v[0] if v else None, v[1] if v else None,
        v[2] if v else None, _patch3d(cfg, c_x.shape[1:], side),
        _PATCHES_PER_VOLUME * len(c_x) if cfg.native else None, sliding_window=cfg.native,
    )


def _mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


# ------------------------------------------------------------------------------------------------------- main


def run_audit(cfg: AuditConfig, *, progress: ProgressCallback | None = None) -> AuditReport:
    """Run the audit described by ``cfg`` and return its report (and write it when ``cfg.out`` is set).

    Args:
        cfg: settings; ``cfg.quick`` shrinks them (see :meth:`AuditConfig.effective`).
        progress: ``callback(description, completed, total)`` for the loading step and every victim run.

    Returns:
        :class:`AuditReport`; ``report.paths`` lists the files written.

    Raises:
        InputError: unreadable cases, missing masks, clean and protected folders with different cases.
        GeometryError: a protected image differs from its clean image in shape or affine.
        ConfigError: bad settings, unknown test cases, no structure in the training cases, ``unet3d`` on 2D images,
            a report folder inside an input folder.

    Example:
        >>> report = run_audit(AuditConfig(clean=Path("ct"), protected=Path("ct_prot"), masks=Path("labels")))  # doctest: +SKIP
        >>> report.runs[0].verdict  # doctest: +SKIP
    """

    started = time.perf_counter()
    requested = cfg
    cfg = cfg.effective()
    if cfg.out is not None:
        from umed.io import check_output_location

        check_output_location(cfg.out, [d for d in (cfg.clean, cfg.protected, cfg.masks) if d is not None])
    pairs = _pair_cases(cfg)
    ids = [case.case_id for case, _ in pairs]
    train_ids, test_ids = _split(ids, cfg)
    from umed.resume import leakage_warnings  # a test case that fitted the protector, or a duplicate under another name

    notes: list[str] = leakage_warnings(cfg.protected, pairs, test_ids)

    items: dict[str, _Loaded] = {}
    for k, (case, protected_path) in enumerate(pairs):
        if progress:
            progress("loading cases", k, len(pairs))
        items[case.case_id] = _load(case, protected_path, "test" if case.case_id in test_ids else "train", cfg)
    if progress:
        progress("loading cases", len(pairs), len(pairs))
    ndims = {item.clean.ndim for item in items.values()}
    if len(ndims) > 1:
        raise InputError(f"{cfg.clean}: mixes 2D images and 3D volumes (expected one kind)")
    ndim = ndims.pop()
    if ndim == 2 and "unet3d" in cfg.victims:
        raise ConfigError(f"victims: unet3d needs volumes (got 2D images in {cfg.clean})")
    if "unet3d" in cfg.victims and cfg.size is not None and cfg.size < 32:
        raise ConfigError(f"size: unet3d trains on (size/2)^3 volumes and needs size >= 32 (got {cfg.size})")
    for case_id in ids:
        if items[case_id].audit.structure_slices == 0:
            notes.append(f"{case_id}: no structure voxels; it contributes only to the imperceptibility table")

    fit_ids, val_ids = validation_split(train_ids, seed=cfg.seed) if cfg.validation else (train_ids, [])
    if cfg.validation and not val_ids:
        notes.append("one training case only: no validation split, nnU-Net's selection rule is left out")
    train_items = [items[i] for i in train_ids]
    test_items = [items[i] for i in test_ids]
    train, test = _slices([items[i] for i in fit_ids], cfg), _slices(test_items, cfg)
    val = _slices([items[i] for i in val_ids], cfg) if val_ids else None
    if not (train.labels > 0).any():
        raise ConfigError(
            f"{cfg.masks or cfg.clean}: no structure voxels in the training cases "
            f"(labels {list(cfg.structure_labels) if cfg.structure_labels else '> 0'})"
        )
    if len(test.labels) == 0:
        raise ConfigError(f"{cfg.masks or cfg.clean}: no test slices (the test cases hold no structure)")
    every = _join(train, val)  # the threshold attacker fits on every training case
    floor = threshold_floor(every.protected, every.labels > 0, test.clean, test.labels > 0)
    floor_clean = threshold_floor(every.clean, every.labels > 0, test.clean, test.labels > 0)

    side = cfg.size // 2 if cfg.size else None
    data = {"2d": _victim_data_2d(cfg, train, test, val)}
    if "unet3d" in cfg.victims:
        data["3d"] = _victim_data_3d(cfg, [items[i] for i in fit_ids], test_items, [items[i] for i in val_ids], side)
    examples = _examples(train_items)
    for item in items.values():  # the full-resolution volumes are no longer needed
        item.clean = item.protected = item.labels = None

    cache = CleanCache(cfg, data, package_versions().get("umed")) if cfg.clean_cache is not None else None
    runs = [
        audit_run(cfg, victim, defense, data["3d" if victim == "unet3d" else "2d"], floor.dice, cache, progress)
        for victim in cfg.victims
        for defense in cfg.defenses
    ]

    cases = [items[i].audit for i in ids]
    imperceptibility = {
        "psnr": _mean([c.psnr for c in cases]),
        "psnr_roi": _mean([c.psnr_roi for c in cases]),
        "ssim": _mean([c.ssim for c in cases]),
        "max_abs_change_255": float(max(c.max_abs_change_255 for c in cases)),
        "max_abs_change_outside_roi_255": float(max(c.max_abs_change_outside_roi_255 for c in cases)),
        "changed_fraction": _mean([c.changed_fraction for c in cases]),
        "unchanged_cases": float(sum(1 for c in cases if math.isinf(c.psnr))),
    }
    if imperceptibility["unchanged_cases"]:
        notes.append(f"{int(imperceptibility['unchanged_cases'])} case(s) are identical in both folders (PSNR inf, "
                     "left out of the mean PSNR)")
    summary = {
        "ndim": ndim,
        "size": cfg.size if cfg.size else "native",
        "slice_shape": list(train.labels.shape[1:]),
        "train_slices": int(len(train.labels)),
        "train_structure_slices": int((train.labels > 0).reshape(len(train.labels), -1).any(axis=1).sum()),
        "validation_slices": int(len(val.labels)) if val else 0,
        "test_slices": int(len(test.labels)),
        "test_structure_slices": int((test.labels > 0).reshape(len(test.labels), -1).any(axis=1).sum()),
        "structure_labels": list(cfg.structure_labels) if cfg.structure_labels else "every label > 0",
        "roi": f"structure dilated by {cfg.roi_dilation} voxels (Euclidean distance <= {cfg.roi_dilation})",
        "intensity": "percentile 0.5/99.5 mapping fitted on each clean image, applied to clean and protected",
        "resampling": (
            f"native resolution ({'x'.join(str(n) for n in train.labels.shape[1:])} slices, edge-padded to a multiple "
            f"of 16); training on random {_patch2d(cfg, train.labels.shape[1:]) or 'full-slice'} patches, every other "
            "one centred on structure; testing on full slices"
            if cfg.native else f"slices resampled to {cfg.size}x{cfg.size}: area averaging for images, nearest for labels"
        ),
        "hd95_units": "mm" + ("" if cfg.native else " (pixel size after resampling)"),
        "quick": requested.quick,
        "fit_cases": fit_ids,
        "validation_cases": val_ids,
        "selection_rules": {
            "best": "oracle: the epoch with the best clean-test Dice",
            "last": "the last epoch",
            "nnunet": "nnU-Net's checkpoint_best: best EMA (0.9/0.1) of the Dice on the validation cases "
                      "(protected for the protected victim), held out from fitting" if val_ids else "not available",
        },
    }
    if "unet3d" in cfg.victims:
        summary["volume_shape"] = list(data["3d"].test_x.shape[1:])
        summary["patch_3d"] = list(data["3d"].patch)
        if cfg.native:
            summary["volume_note"] = ("unet3d: native resolution, volumes cropped to their non-background bounding box, "
                                   "sliding-window inference on the test volumes")
    report = AuditReport(
        config=cfg,
        train_cases=train_ids,
        test_cases=test_ids,
        cases=cases,
        imperceptibility=imperceptibility,
        floor=floor,
        floor_clean=floor_clean,
        runs=runs,
        data=summary,
        examples=examples,
        test_labels=test.labels,
        test_labels_3d=data["3d"].test_y if "3d" in data else None,
        versions=package_versions(),
        notes=notes,
    )
    report.seconds = time.perf_counter() - started
    if cfg.out is not None:
        from umed.report import write_report

        write_report(report, cfg.out)
    return report
