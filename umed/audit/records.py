"""The audit's records: one victim run (:class:`VictimRun`), one victim under one defense on clean and protected
data (:class:`AuditRun`), one case's imperceptibility (:class:`CaseAudit`), a figure slice (:class:`ExampleSlice`)
and the whole result (:class:`AuditReport`). Plain dataclasses with their JSON forms; no computation beyond
selecting epochs and naming verdicts, so that every other module of the audit can import them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from umed.audit.config import AuditConfig
from umed.audit.floor import ThresholdFloor
from umed.audit.selection import RULES, ema, select_epochs
from umed.audit.verdict import floor_verdict, mix_gains, mix_verdict, rules_at_or_above

__all__ = ["AuditReport", "AuditRun", "CaseAudit", "ExampleSlice", "VictimRun"]


@dataclass
class VictimRun:
    """One victim trained once and scored on clean test data every epoch.

    Attributes:
        victim: victim name.
        defense: defense name.
        seed: the run seed (model init, batch order, flips, defense randomness).
        epochs: epochs trained.
        train_loss: mean DiceCE training loss per epoch, length ``epochs``.
        test_dice: clean-test Dice (structure vs background, all test images jointly) per epoch.
        test_hd95: mean HD95 per epoch (see :func:`umed.metrics.hd95_per_image`; mm when spacing was given, else
            pixels).
        best_dice: the highest per-epoch test Dice (what early stopping on the test set would give).
        best_epoch: 1-based epoch of ``best_dice``.
        last_dice: test Dice after the last epoch.
        best_hd95: HD95 at ``best_epoch``.
        last_hd95: HD95 after the last epoch.
        dice_per_label: last-epoch Dice per label value of the test labels (only when there are two or more); voxels
            of the other structure labels are ignored because the victim segments their union.
        predictions: last-epoch test predictions ``(N, *spatial)`` uint8 in {0, 1}.
        n_train: training samples (slices, or volumes in patch mode).
        n_test: test samples.
        seconds: wall time of the run.
        details: defense-specific notes (e.g. cases made clean by ``mix``).
        val_dice: Dice per epoch on the validation split of the training data (nnU-Net's rule, see
            :mod:`umed.audit.selection`); empty when the run had no validation data.
    """

    victim: str
    defense: str
    seed: int
    epochs: int
    train_loss: list[float]
    test_dice: list[float]
    test_hd95: list[float]
    best_dice: float
    best_epoch: int
    last_dice: float
    best_hd95: float
    last_hd95: float
    dice_per_label: dict[int, float]
    predictions: np.ndarray = field(repr=False)
    n_train: int = 0
    n_test: int = 0
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)
    val_dice: list[float] = field(default_factory=list)

    def epoch(self, rule: str) -> int | None:
        """1-based epoch a selection rule of :data:`umed.audit.selection.RULES` keeps (``None``: rule not available)."""
        return select_epochs(self.test_dice, self.val_dice or None)[rule]

    def dice(self, rule: str) -> float:
        """Clean-test Dice of the epoch ``rule`` keeps (``nan`` when the rule is not available)."""
        epoch = self.epoch(rule)
        return float(self.test_dice[epoch - 1]) if epoch else float("nan")

    def hd95(self, rule: str) -> float:
        """Mean HD95 of the epoch ``rule`` keeps (``nan`` when the rule is not available)."""
        epoch = self.epoch(rule)
        return float(self.test_hd95[epoch - 1]) if epoch else float("nan")

    @property
    def nnunet_dice(self) -> float:
        """Clean-test Dice of nnU-Net's ``checkpoint_best`` (best EMA of the validation Dice)."""
        return self.dice("nnunet")

    @classmethod
    def from_dict(cls, doc: dict[str, Any], predictions: np.ndarray) -> VictimRun:
        """The inverse of :meth:`to_dict` (``None`` floats back to ``nan``), with the predictions stored beside it."""

        def num(v: Any) -> float:
            return float("nan") if v is None else float(v)

        return cls(
            victim=doc["victim"],
            defense=doc["defense"],
            seed=int(doc["seed"]),
            epochs=int(doc["epochs"]),
            train_loss=[num(v) for v in doc["train_loss"]],
            test_dice=[num(v) for v in doc["test_dice"]],
            test_hd95=[num(v) for v in doc["test_hd95"]],
            best_dice=num(doc["best_dice"]),
            best_epoch=int(doc["best_epoch"]),
            last_dice=num(doc["last_dice"]),
            best_hd95=num(doc["best_hd95"]),
            last_hd95=num(doc["last_hd95"]),
            dice_per_label={int(k): num(v) for k, v in doc["dice_per_label"].items()},
            predictions=predictions,
            n_train=int(doc["n_train"]),
            n_test=int(doc["n_test"]),
            seconds=float(doc["seconds"]),
            details=dict(doc.get("details", {})),
            val_dice=[num(v) for v in doc.get("val_dice", [])],
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (everything except the predictions; non-finite floats as ``None``)."""

        def clean(v: float) -> float | None:
            return float(v) if v is not None and math.isfinite(v) else None

        return {
            "victim": self.victim,
            "defense": self.defense,
            "seed": self.seed,
            "epochs": self.epochs,
            "train_loss": [clean(v) for v in self.train_loss],
            "test_dice": [clean(v) for v in self.test_dice],
            "test_hd95": [clean(v) for v in self.test_hd95],
            "best_dice": clean(self.best_dice),
            "best_epoch": self.best_epoch,
            "last_dice": clean(self.last_dice),
            "best_hd95": clean(self.best_hd95),
            "last_hd95": clean(self.last_hd95),
            "dice_per_label": {str(k): clean(v) for k, v in self.dice_per_label.items()},
            "n_train": self.n_train,
            "n_test": self.n_test,
            "seconds": round(self.seconds, 2),
            "details": self.details,
            "val_dice": [clean(v) for v in self.val_dice],
            "val_dice_ema": [clean(v) for v in ema(self.val_dice)],
            "nnunet_epoch": self.epoch("nnunet"),
            "nnunet_dice": clean(self.dice("nnunet")),
            "nnunet_hd95": clean(self.hd95("nnunet")),
            "selection": {
                rule: {"epoch": self.epoch(rule), "dice": clean(self.dice(rule)), "hd95": clean(self.hd95(rule))}
                for rule in RULES
            },
        }


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
        """Plain-language result (:mod:`umed.audit.verdict`): against the clean-half victim for ``mix``, else against
        the threshold floor under all three selection rules."""
        if self.clean_half is not None:
            return mix_verdict(mix_gains(self.protected, self.clean_half))
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
    """Everything :func:`run_audit` found; :func:`umed.audit.report.write_report` turns it into files.

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
        paths: files written (filled by :func:`umed.audit.report.write_report`).
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
    return {
        "threshold": floor.threshold,
        "polarity": floor.polarity,
        "dice": floor.dice,
        "train_dice": floor.train_dice,
    }
