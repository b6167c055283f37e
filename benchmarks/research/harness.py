"""Shared harness of the issue-14 robustness research: BraTS tumour-core data in the audit's space, designs
protected at exactly the target PSNR per volume, and the fast screening victim.

Everything goes through the package: cases are read with :mod:`umed.io`, mapped with the audit's percentile
mapping (:func:`umed.intensity.fit_mapping`, 0.5/99.5), regions come from :mod:`umed.regions`, package protectors run
through :func:`umed.protect.protect_dataset` (the efficacy benchmark's path, into a cache folder), defenses are
:func:`umed.defenses.get_defense` and the victim is :func:`umed.victims.train_victim`.

Screen protocol (``ScreenSettings``): the 2D MONAI UNet of the audit trained on random ``crop x crop`` patches
(every other one centred on structure) of the native 240x240 training slices (every slice with tumour core plus
half as many without), after the defense's data transform (or with its per-batch transform); scored every epoch on
the clean test slices holding tumour core, cropped to ``test_box`` around each test case's tumour. The clean run of
each defense is cached. Arrays are cached in ``/tmp/umed_screen`` (never in the repo).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this checkout's umed, not another installed copy

from _common import BRATS, BRATS_TEST, BRATS_TRAIN, link_cases  # noqa: E402

from umed.registry import Registry  # noqa: E402

CACHE = Path(os.environ.get("UMED_SCREEN_CACHE", "/tmp/umed_screen"))
LABELS = (1, 3, 4)  # tumour core
TARGET_DB = 50.0
EPS_CAP = 24 / 255
BAND = 3


@dataclass
class CaseData:
    """One BraTS case in the audit's normalised space."""

    case_id: str
    clean: np.ndarray  # (240, 240, 155) float32
    core: np.ndarray  # bool, same shape


def load_cases(ids: list[str] | None = None) -> dict[str, CaseData]:
    """The T1c volumes (percentile 0.5/99.5 mapping of the clean image, as the audit) and tumour-core masks."""
    from umed.intensity import fit_mapping
    from umed.io import load_case
    from umed.regions import foreground

    CACHE.mkdir(parents=True, exist_ok=True)
    out = {}
    for case in ids or BRATS_TRAIN + BRATS_TEST:
        fi, fm = CACHE / f"{case}_t1c.npy", CACHE / f"{case}_core.npy"
        if not fi.exists():
            image, _ = load_case(BRATS / "t1c" / f"{case}.nii.gz")
            labels, _ = load_case(BRATS / "masks" / f"{case}.nii.gz")
            mapping = fit_mapping(image, mode="percentile", percentiles=(0.5, 99.5))
            np.save(fi, mapping.to_unit(image).astype(np.float32))
            np.save(fm, foreground(np.asarray(labels).astype(np.int16), LABELS))
        out[case] = CaseData(case, np.load(fi), np.load(fm))
    return out


def to_psnr(
    delta: np.ndarray, *, target_db: float = TARGET_DB, cap: float = EPS_CAP
) -> tuple[np.ndarray, float, float]:
    """``delta`` rescaled so the volume's PSNR (data range 1) is ``target_db``, unless its L-inf bound would pass
    ``cap`` (then the cap binds). Returns ``(delta, psnr, eps)``."""
    delta = delta.astype(np.float64)
    energy = float(np.sum(delta**2))
    peak = float(np.abs(delta).max())
    if energy == 0:
        return delta.astype(np.float32), math.inf, 0.0
    factor = min(math.sqrt(10 ** (-target_db / 10) * delta.size / energy), cap / peak)
    delta = delta * factor
    psnr = 10 * math.log10(delta.size / float(np.sum(delta**2)))
    return delta.astype(np.float32), psnr, peak * factor


def protect_fixed(
    cases: dict[str, CaseData],
    pattern: Callable[[CaseData], np.ndarray],
    *,
    target_db: float = TARGET_DB,
    cap: float = EPS_CAP,
) -> tuple[dict[str, np.ndarray], dict[str, dict[str, float]]]:
    """Protected training volumes for a fixed design: ``pattern(case)`` is a unit perturbation (zero outside the
    support, checked), rescaled per case to ``target_db``."""
    from umed.regions import support

    protected, stats = {}, {}
    for case in BRATS_TRAIN:
        data = cases[case]
        unit = pattern(data).astype(np.float32)
        allowed = np.stack([support(data.core[..., z], BAND) for z in range(data.core.shape[-1])], axis=-1)
        if np.any(unit[~allowed] != 0):
            raise ValueError(f"design changes voxels outside the support of {case}")
        delta, psnr, eps = to_psnr(unit, target_db=target_db, cap=cap)
        protected[case] = data.clean + delta
        stats[case] = {"psnr": round(psnr, 3), "eps_255": round(eps * 255, 2)}
    return protected, stats


def protect_package(
    name: str,
    method: str,
    *,
    config: Path | None = None,
    overrides: dict[str, Any] | None = None,
    method_settings: dict[str, Any] | None = None,
    cases: dict[str, CaseData],
) -> tuple[dict[str, np.ndarray], dict[str, dict[str, float]], dict[str, Any]]:
    """Protect the training cases with a package protector as ``benchmarks/efficacy.py`` does (into
    ``CACHE/protect/<name>``, resumed when already there); returns the protected volumes in the audit's space, per
    case PSNR/eps and the protector's training log."""
    import dataclasses

    from umed.protect import protect_dataset
    from umed.settings import load_protect_config

    out = CACHE / "protect" / name
    done = _earlier_protection(out)
    if done is not None:
        return _read_protection(out, done)
    images, masks = link_cases(BRATS / "t1c", BRATS / "masks", BRATS_TRAIN, CACHE / "data_train")
    cfg = load_protect_config(
        config,
        images=images,
        masks=masks,
        out=out,
        method=method,
        seed=0,
        structure_labels=LABELS,
        fit_cases=tuple(BRATS_TRAIN),
        **(overrides or {}),
    )
    cfg = dataclasses.replace(cfg, method_settings={**cfg.method_settings, **(method_settings or {})})
    summary = protect_dataset(cfg)
    failed = [(r.case_id, r.error) for r in summary.results if r.status == "failed"]
    if failed:
        raise RuntimeError(f"protect failed: {failed}")
    return _read_protection(out, {r.case_id: r.metrics for r in summary.results})


def _earlier_protection(out: Path) -> dict[str, dict[str, float]] | None:
    """Per case metrics of a protection written into ``out`` by an earlier umed whose manifest has no resume key
    (session 3's cache; today's ``protect_dataset`` refuses to resume it), when every training case is there."""
    path = out / "manifest.json"
    if not path.is_file():
        return None
    doc = json.loads(path.read_text())
    cases = doc.get("cases", {})
    if "resume_key_sha256" in doc or any(
        cases.get(c, {}).get("status") != "protected" or not (out / f"{c}.nii.gz").is_file() for c in BRATS_TRAIN
    ):
        return None
    return {c: cases[c]["metrics"] for c in BRATS_TRAIN}


def _read_protection(
    out: Path, metrics: dict[str, dict[str, float]]
) -> tuple[dict[str, np.ndarray], dict[str, dict[str, float]], dict[str, Any]]:
    """The protected volumes in ``out`` mapped to the audit's space, per case PSNR / L-inf, the training log."""
    from umed.intensity import fit_mapping
    from umed.io import load_case

    protected, stats = {}, {}
    for case_id, values in metrics.items():
        clean_image, _ = load_case(BRATS / "t1c" / f"{case_id}.nii.gz")
        image, _ = load_case(out / f"{case_id}.nii.gz")
        mapping = fit_mapping(clean_image, mode="percentile", percentiles=(0.5, 99.5))
        protected[case_id] = mapping.to_unit(image).astype(np.float32)
        stats[case_id] = {
            "psnr": round(float(values["psnr"]), 3),
            "eps_255": round(float(values["max_abs_change_255"]), 2),
        }
    doc = json.loads((out / "protector.json").read_text()) if (out / "protector.json").is_file() else {}
    log = {k: v for k, v in (doc.get("training_log") or {}).items() if not k.endswith("_curve")}
    log["training_seconds"] = doc.get("training_seconds")
    return protected, stats, log


# ------------------------------------------------------------------------------------------------------- screen


@dataclass(frozen=True)
class ScreenSettings:
    """The fast screening victim (see the module docstring)."""

    crop: int = 64
    epochs: int = 8
    patches_per_epoch: int = 320
    batch_size: int = 16
    lr: float = 1e-3
    seed: int = 0
    empty_ratio: float = 0.5
    test_box: int = 96
    victim: str = "unet"

    def train_settings(self, defense: str) -> Any:
        """The :class:`umed.audit.training.TrainSettings` of this screening victim under ``defense``."""
        from umed.audit.training import TrainSettings

        return TrainSettings(
            epochs=self.epochs,
            batch_size=self.batch_size,
            seed=self.seed,
            victim=self.victim,
            lr=self.lr,
            defense=defense,
            patch_size=(self.crop, self.crop),
            patches_per_epoch=self.patches_per_epoch,
        )


# Named screen protocols (validated against the full audit by ``validate_screen.py``). v1: session 3 (Spearman 0.755
# on 11 pairs). v2 (session 4, fixed before the comparison): 96-voxel crops and 12 epochs, closer to the audit's
# 128-voxel crops and 10-15 epochs, so that poisons whose effect builds up over training (EM, TAP) can show it.
PROTOCOLS: Registry[ScreenSettings] = Registry(
    "screen protocol", {"v1": ScreenSettings(), "v2": ScreenSettings(crop=96, epochs=12)}
)


@dataclass
class ScreenSets:
    train_clean: np.ndarray  # (N, 240, 240)
    train_labels: np.ndarray
    train_groups: np.ndarray
    test_x: np.ndarray  # (M, box, box)
    test_y: np.ndarray
    index: dict[str, list[int]] = field(default_factory=dict)


def screen_sets(cases: dict[str, CaseData], settings: ScreenSettings) -> ScreenSets:
    """Training slices (every core slice plus ``empty_ratio`` as many without, seeded) and cropped test slices."""
    xs, ys, groups, index = [], [], [], {}
    for k, case in enumerate(BRATS_TRAIN):
        data = cases[case]
        has = data.core.any(axis=(0, 1))
        varied = data.clean.max(axis=(0, 1)) > data.clean.min(axis=(0, 1))
        empty = np.flatnonzero(~has & varied)
        rng = np.random.default_rng([settings.seed, k])
        pick = rng.choice(empty, size=min(len(empty), int(round(settings.empty_ratio * has.sum()))), replace=False)
        z = sorted(int(i) for i in [*np.flatnonzero(has), *pick])
        index[case] = z
        xs.append(np.moveaxis(data.clean[..., z], -1, 0))
        ys.append(np.moveaxis(data.core[..., z], -1, 0).astype(np.int16))
        groups.append(np.full(len(z), k))
    tx, ty = [], []
    half = settings.test_box // 2
    for case in BRATS_TEST:
        data = cases[case]
        has = np.flatnonzero(data.core.any(axis=(0, 1)))
        centre = np.argwhere(data.core).mean(axis=0).astype(int)
        a = [int(np.clip(centre[i] - half, 0, data.core.shape[i] - settings.test_box)) for i in range(2)]
        box = (slice(a[0], a[0] + settings.test_box), slice(a[1], a[1] + settings.test_box))
        tx.append(np.moveaxis(data.clean[box][..., has], -1, 0))
        ty.append(np.moveaxis(data.core[box][..., has], -1, 0).astype(np.int16))
    return ScreenSets(
        np.concatenate(xs), np.concatenate(ys), np.concatenate(groups), np.concatenate(tx), np.concatenate(ty), index
    )


def protected_slices(sets: ScreenSets, protected: dict[str, np.ndarray]) -> np.ndarray:
    """The training slices of ``sets`` taken from the protected volumes."""
    return np.concatenate([np.moveaxis(protected[case][..., sets.index[case]], -1, 0) for case in BRATS_TRAIN])


def _summary(run: Any) -> dict[str, Any]:
    curve = [round(float(v), 4) for v in run.test_dice]
    return {
        "best": max(curve),
        "best_epoch": int(np.argmax(curve)) + 1,
        "last": curve[-1],
        "late_mean": round(float(np.mean(curve[len(curve) // 2 :])), 4),
        "curve": curve,
        "seconds": round(run.seconds, 1),
    }


def screen_run(sets: ScreenSets, train_x: np.ndarray, defense: str, settings: ScreenSettings) -> dict[str, Any]:
    """One screening victim on ``train_x`` under ``defense``; returns best/last/late-mean Dice and the curve."""
    import torch

    from umed.audit.training import train_victim

    torch.set_num_threads(1)
    run = train_victim(
        train_x,
        sets.train_labels,
        sets.test_x,
        sets.test_y,
        settings.train_settings(defense),
        clean_train_x=sets.train_clean,
        train_groups=sets.train_groups,
    )
    return _summary(run)


def clean_run(sets: ScreenSets, defense: str, settings: ScreenSettings) -> dict[str, Any]:
    """The clean screening run of ``defense`` (cached by settings and defense)."""
    key = hashlib.sha256(json.dumps([asdict(settings), defense, sets.train_clean.shape]).encode()).hexdigest()[:16]
    path = CACHE / f"clean_{defense}_{key}.json"
    if path.exists():
        return json.loads(path.read_text())
    result = screen_run(sets, sets.train_clean, defense, settings)
    path.write_text(json.dumps(result))
    return result
