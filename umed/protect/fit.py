"""Fit a protector for a protect run, or load one: gather the training slices (normalised, the ones with the most
structure first), make the protector by name, fit it and save it as ``OUT/protector.json``; or load a saved one
with the rules it was fitted with. :func:`plan_protector` decides which (see :mod:`umed.protect` for the run).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from umed.case import Case, CaseResult
from umed.errors import ConfigError, UmedError
from umed.protect.apply import as_volume, case_eps_scale, structure_slices
from umed.protectors.base import Budget, ProgressCallback, Protector, SliceBatch
from umed.settings import ProtectConfig

__all__ = ["Plan", "collect_training_slices", "fit_mapping", "fit_protector", "recorded_rules", "training_cases"]

logger = logging.getLogger(__name__)


@dataclass
class Plan:
    """What a run will apply and under which resume key."""

    protector: Protector | None
    path: Path | None
    document: dict[str, Any]
    failures: list[CaseResult]
    key: dict[str, Any]
    fit_ids: list[str]


def fit_mapping(image: np.ndarray, cfg: ProtectConfig) -> Any:
    """The case's :class:`umed.intensity.IntensityMapping` (file units -> normalised) under ``cfg``'s rule."""
    from umed.intensity import fit_mapping as fit

    if cfg.intensity_mode == "window":
        return fit(image, mode="window", window=cfg.window)
    return fit(image, mode="percentile")


@dataclass(frozen=True)
class _CaseSlices:
    """A training case's structure slices, the most structure first: ``(N, H, W)`` float32 normalised images, their
    bool structures, the per-case budget scale and the slice indices (last axis)."""

    case_id: str
    images: np.ndarray
    structures: np.ndarray
    scale: float
    order: list[int]


def collect_training_slices(
    cases: Sequence[Case], cfg: ProtectConfig, budget: Budget, progress: ProgressCallback | None
) -> tuple[SliceBatch | None, list[CaseResult]]:
    """Validate every case and gather the slices that hold structure, normalised, for fitting.

    Slices are taken evenly from each case, the ones with the most structure first, up to ``max_train_slices`` in
    all. Returns the batch (``None`` if no case has structure) and a failed :class:`CaseResult` per bad case.
    """
    from umed.io import validate_case

    failures: list[CaseResult] = []
    per_case: list[_CaseSlices] = []
    for done, case in enumerate(cases):
        try:
            image, meta, labels, _ = validate_case(case)
        except UmedError as error:
            failures.append(CaseResult(case.case_id, "failed", error=str(error)))
            continue
        finally:
            if progress:
                progress("checking cases", done + 1, len(cases))
        slices = _case_slices(case.case_id, image, labels, cfg, budget)
        if slices is not None:
            per_case.append(slices)
    if not per_case:
        return None, failures
    return _pool(per_case, cfg.max_train_slices), failures


def _case_slices(
    case_id: str, image: np.ndarray, labels: np.ndarray, cfg: ProtectConfig, budget: Budget
) -> _CaseSlices | None:
    """One case's structure slices, normalised, the most structure first (``None`` without structure)."""
    structure, indices = structure_slices(labels, cfg.structure_labels)
    if not indices:
        return None
    volume, structure_volume = as_volume(image), as_volume(structure)
    order = sorted(indices, key=lambda z: -int(structure_volume[..., z].sum()))
    scale = case_eps_scale(structure, budget, target_psnr=cfg.target_psnr, eps_cap=cfg.eps_cap)
    mapping = fit_mapping(image, cfg)
    return _CaseSlices(
        case_id,
        mapping.to_unit(np.stack([volume[..., z] for z in order])).astype(np.float32),
        np.stack([structure_volume[..., z] for z in order]),
        scale,
        order,
    )


def _pool(per_case: Sequence[_CaseSlices], max_slices: int) -> SliceBatch:
    """An even share of ``max_slices`` from each case, padded to the largest slice (structure False there)."""
    quota = max(1, max_slices // len(per_case))
    images: list[np.ndarray] = []
    structures: list[np.ndarray] = []
    keys: list[str] = []
    scales: list[np.ndarray] = []
    shapes = {entry.images.shape[1:] for entry in per_case}
    for entry in per_case:
        take = min(quota, len(entry.order))
        images.append(entry.images[:take])
        structures.append(entry.structures[:take])
        keys.extend(f"{entry.case_id}/{z}" for z in entry.order[:take])
        scales.append(np.full(take, entry.scale, dtype=np.float32))
    if len(shapes) > 1:  # slices of different sizes: pad to the largest, structure stays False in the padding
        height = max(shape[0] for shape in shapes)
        width = max(shape[1] for shape in shapes)
        images = [np.pad(a, ((0, 0), (0, height - a.shape[1]), (0, width - a.shape[2]))) for a in images]
        structures = [np.pad(a, ((0, 0), (0, height - a.shape[1]), (0, width - a.shape[2]))) for a in structures]
    return SliceBatch(np.concatenate(images), np.concatenate(structures), keys, np.concatenate(scales))


def training_cases(cfg: ProtectConfig, cases: Sequence[Case]) -> list[Case]:
    fit_on = [case for case in cases if cfg.fit_cases is None or case.case_id in cfg.fit_cases]
    if cfg.fit_cases is not None and len(fit_on) != len(set(cfg.fit_cases)):
        missing = sorted(set(cfg.fit_cases) - {case.case_id for case in fit_on})
        raise ConfigError(f"{cfg.images}: fit_cases not found in the dataset ({missing})")
    return fit_on


def check_some_structure(cfg: ProtectConfig, cases: Sequence[Case]) -> None:
    """Refuse a dataset whose masks hold no structure voxel (when no fit does this check: a mark-only run), reading
    masks until the first one with structure."""
    from umed.io import load_mask
    from umed.regions import foreground

    for case in cases:
        if case.mask_path is None:
            continue
        try:
            if foreground(np.asarray(load_mask(case.mask_path)[0]), cfg.structure_labels).any():
                return
        except (UmedError, TypeError):
            continue  # a bad mask is reported when its case is applied
    raise _nothing_to_protect(cfg, cases)


def _nothing_to_protect(cfg: ProtectConfig, cases: Sequence[Case]) -> ConfigError:
    """The error for a dataset whose masks hold no structure voxel, naming the labels they do hold."""
    from umed.io import load_mask

    present: set[int] = set()
    for case in cases:
        if case.mask_path is None:
            continue
        try:
            present.update(int(value) for value in np.unique(load_mask(case.mask_path)[0]))
        except (UmedError, TypeError):
            continue
    present.discard(0)
    where = cfg.masks or cfg.images
    if cfg.structure_labels:
        return ConfigError(
            f"{where}: no case has any voxel of label(s) {list(cfg.structure_labels)} (expected "
            f"labels present in the masks: {sorted(present) or 'none but 0'})"
        )
    return ConfigError(f"{where}: every mask is empty (expected some label > 0 to protect, got only 0)")


def fit_protector(
    cfg: ProtectConfig,
    fit_on: Sequence[Case],
    protector: Protector,
    key: dict[str, Any],
    fit_ids: list[str],
    mode: int,
    progress: ProgressCallback | None,
) -> Plan:
    """Fit ``protector`` on the training cases and save it as OUT/protector.json (+ .pt)."""
    import json

    from umed.protect.manifest import PROTECTOR_NAME
    from umed.protect.plan import key_digest
    from umed.protect.protector_io import save_protector
    from umed.protect.threads import fixed_threads

    batch, failures = collect_training_slices(fit_on, cfg, protector.budget, progress)
    if batch is None:
        if not failures:
            raise _nothing_to_protect(cfg, fit_on)
        # every case with structure failed: no protector; the per-case errors are reported, empty masks passed on
        return Plan(None, None, {}, failures, key, fit_ids)
    started = time.perf_counter()
    with fixed_threads():  # the weights' bytes must not depend on the machine's threads
        log = protector.fit(batch, progress=progress)
    extra = {
        "structure_labels": list(cfg.structure_labels) if cfg.structure_labels else None,
        "intensity_mode": cfg.intensity_mode,
        "window": list(cfg.window) if cfg.window else None,
        "target_psnr": cfg.target_psnr,
        "eps_cap": cfg.eps_cap,
        "training_slices": int(batch.images.shape[0]),
        "training_seconds": round(time.perf_counter() - started, 2),
        "training_log": log,
        "training_data": key["training_data"],
        "fit_cases": fit_ids,
        "resume_key": key,
        "resume_key_sha256": key_digest(key),
    }
    path = save_protector(protector, cfg.out / PROTECTOR_NAME, extra=extra, mode=mode)
    return Plan(protector, path, json.loads(path.read_text()), failures, key, fit_ids)


def recorded_rules(cfg: ProtectConfig, document: dict[str, Any]) -> ProtectConfig:
    """Apply a saved protector with the rules it was fitted with (structure, per-case budget, intensity mapping).

    These define the protector as much as its weights; a setting of ``cfg`` that disagrees is overridden with a
    warning, so ``umed protect --protector`` and the MONAI transform give the same output.
    """
    import dataclasses

    recorded = {
        "structure_labels": tuple(document["structure_labels"]) if document.get("structure_labels") else None,
        "target_psnr": document.get("target_psnr"),
        "eps_cap": document.get("eps_cap", cfg.eps_cap),
        "intensity_mode": document.get("intensity_mode", cfg.intensity_mode),
        "window": tuple(document["window"]) if document.get("window") else None,
    }
    changed = {key: value for key, value in recorded.items() if getattr(cfg, key) != value}
    for key, value in changed.items():
        logger.warning("%s: %s=%r as the protector was fitted (not %r)", cfg.protector, key, value, getattr(cfg, key))
    return dataclasses.replace(cfg, **changed) if changed else cfg
