"""One case of ``umed protect``, on any worker: skip it when an earlier run's output is intact, copy it when its mask
is empty, else map it to normalised units, apply the protector (:func:`umed.protect.apply.protect_array`), measure
the change, check the guarantees (budget, support) and write it in its own format.

:func:`protect_job` is the job :func:`umed.protect.engine.map_jobs` runs; it returns a
:class:`umed.protect.manifest.CaseOutcome`.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from umed.case import Case, CaseResult
from umed.errors import UmedError
from umed.metrics import changed_box
from umed.protect.apply import as_volume, protect_array, structure_slices, support_box
from umed.protect.fit import fit_mapping
from umed.protect.manifest import CaseEntry, CaseOutcome
from umed.protectors.base import Protector
from umed.settings import ProtectConfig

__all__ = ["change_metrics", "lost_job", "protect_job"]

logger = logging.getLogger(__name__)

Hashes = tuple[str | None, str | None]
"""A case's ``(image SHA-256, mask SHA-256)``; ``None`` for a missing or unreadable file."""


def lost_job(job: tuple[Case, Any, Any], message: str) -> CaseOutcome:
    """The outcome of a case whose workers kept dying."""
    return CaseOutcome(CaseResult(job[0].case_id, "failed", error=f"{job[0].image_path}: {message}"))


def protect_job(
    job: tuple[Case, dict[str, Any] | None, Hashes], shared: tuple[ProtectConfig, Protector | None, int, Any]
) -> CaseOutcome:
    """One case on any worker (see :func:`umed.protect.engine.map_jobs`); a bad case gives a failed result.
    Temporary files a killed earlier attempt of this case left are removed first."""
    from umed.protect.manifest import captured_warnings

    (case, earlier, hashes), (cfg, protector, mode, mark) = job, shared
    for stale in cfg.out.glob(f".{case.image_path.name}.*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
    with captured_warnings() as messages:
        try:
            result, entry = _protect_one(case, cfg, protector, earlier, hashes, mode, mark)
        except UmedError as error:
            result, entry = CaseResult(case.case_id, "failed", error=str(error)), None
    return CaseOutcome(result, entry, list(messages))


def _set_mode(target: Path, mode: int) -> None:
    """Give a written case (file, or DICOM folder's files) ``mode`` (the input's, when stricter than the default)."""
    files = [p for p in target.rglob("*") if p.is_file()] if target.is_dir() else [target]
    for file in files:
        if file.stat().st_mode & 0o777 != mode:
            os.chmod(file, mode)


def _intact_output(case: Case, cfg: ProtectConfig, earlier: dict[str, Any] | None, hashes: Hashes) -> CaseResult | None:
    """The skipped result when an earlier run recorded this case with the same input, mask and (intact) output."""
    from umed.io.provenance import sha256_file

    input_sha, mask_sha = hashes
    if not (
        earlier
        and input_sha
        and earlier.get("input_sha256") == input_sha
        and earlier.get("mask_sha256") == mask_sha
        and isinstance(earlier.get("output"), str)
    ):
        return None
    target = cfg.out / earlier["output"]
    if target.exists() and sha256_file(target) == earlier.get("output_sha256"):
        return CaseResult(case.case_id, "skipped", target, metrics=earlier.get("metrics", {}), details=earlier)
    return None


def _pass_through(case: Case, target: Path, hashes: Hashes) -> tuple[CaseResult, dict[str, Any]]:
    """Copy a case whose mask holds no structure unchanged (the released dataset stays complete)."""
    from umed.io.atomic import copy_atomic, output_mode
    from umed.io.provenance import sha256_file

    logger.warning("%s: the mask has no structure voxel; the case is copied unchanged", case.mask_path)
    copy_atomic(case.image_path, target, mode=output_mode(case.image_path))
    entry = CaseEntry(
        "passed_through",
        str(case.image_path),
        str(case.mask_path),
        target.name,
        *hashes,
        sha256_file(target),
        warning="mask has no structure voxel: copied unchanged",
    ).to_json()
    return CaseResult(case.case_id, "passed_through", target, details=entry), entry


def _protect_one(
    case: Case,
    cfg: ProtectConfig,
    protector: Protector | None,
    earlier: dict[str, Any] | None,
    hashes: Hashes,
    mode: int,
    mark: Any = None,
) -> tuple[CaseResult, dict[str, Any]]:
    """Protect one case (or confirm an earlier run's output) and return its result and manifest entry."""
    from umed.io import output_path_for, save_case, validate_case
    from umed.io.atomic import output_mode
    from umed.io.provenance import sha256_file

    skipped = _intact_output(case, cfg, earlier, hashes)
    if skipped is not None:
        return skipped, skipped.details
    image, meta, labels, _ = validate_case(case)
    target = output_path_for(case, meta, cfg.out)
    structure, indices = structure_slices(labels, cfg.structure_labels)
    del labels  # only the structure is needed from here (peak memory: a CT's label map is 200 MB)
    if not indices:
        return _pass_through(case, target, hashes)
    if protector is None:
        raise UmedError(
            f"{case.image_path}: not protected (no protector could be fitted: every training case with "
            "structure failed, see the failed cases)"
        )
    started = time.perf_counter()
    mapping = fit_mapping(image, cfg)
    # the structure as a label map: its foreground (every label > 0) is the structure itself
    protected = protect_array(
        image,
        structure,
        meta,
        protector,
        mapping=mapping,
        structure_labels=None,
        target_psnr=cfg.target_psnr,
        eps_cap=cfg.eps_cap,
        mark=mark,
    )
    metrics = change_metrics(
        image,
        protected.array,
        structure,
        mapping=mapping,
        band_width=protector.budget.band_width,
        support=protected.support,
        changed_slices=protected.changed_slices,
    )
    _check_guarantees(case, metrics, protected.eps)
    save_case(protected.array, meta, target, derived=True)
    _set_mode(target, output_mode(case.image_path))
    entry = CaseEntry(
        "protected",
        str(case.image_path),
        str(case.mask_path),
        target.name,
        *hashes,
        sha256_file(target),
        format=meta.format,
        seed=protector.seed,
        eps=protected.eps,
        eps_255=protected.eps * 255,
        eps_scale=protected.eps_scale,
        intensity_mapping=mapping.to_dict(),
        changed_slices=len(protected.changed_slices),
        seconds=round(time.perf_counter() - started, 3),
        metrics=metrics,
    ).to_json()
    return CaseResult(case.case_id, "protected", target, metrics=metrics, details=entry), entry


def change_metrics(
    original: np.ndarray,
    protected: np.ndarray,
    structure: np.ndarray,
    *,
    mapping: Any,
    band_width: int,
    support: tuple[tuple[slice, ...], np.ndarray | None] | None = None,
    changed_slices: Sequence[int] | None = None,
) -> dict[str, float]:
    """Imperceptibility of one protected case, in normalised units (data_range 1).

    PSNR is over the whole image (per volume for 3D, per image for 2D) and over the structure (ROI); SSIM over the
    whole image (scikit-image, data_range 1); ``max_abs_change`` in normalised units and in /255;
    ``outside_support_changes`` counts voxels changed outside structure plus band (must be 0).

    Every number is computed from the bounding box of the changed voxels (one comparison pass over the image):
    outside it the two images are equal, so the squared errors there are 0 and every local SSIM is 1
    (:func:`umed.metrics.ssim_changed`). The values are those of the whole-image metrics up to float summation order.
    ``changed_slices`` (the slices :func:`protect_array` perturbed; every other slice of its output is a copy of the
    input) limits that comparison pass to their range.
    """
    from umed.metrics import ssim_changed

    span = float(mapping.high - mapping.low)
    box = _changed_box(original, protected, changed_slices)
    n_structure = int(np.count_nonzero(structure))
    if box is None:
        return {
            "psnr": float("inf"),
            "psnr_roi": float("inf") if n_structure else float("nan"),
            "ssim": 1.0,
            "max_abs_change": 0.0,
            "max_abs_change_255": 0.0,
            "changed_voxels": 0,
            "outside_support_changes": 0,
        }
    reference, test = mapping.to_unit(original[box]), mapping.to_unit(protected[box])
    squared = np.square(reference.astype(np.float64) - test.astype(np.float64))
    change = np.abs(protected[box].astype(np.float64) - original[box].astype(np.float64)) / span
    changed = change > 0
    allowed_box, allowed = support_box(structure, band_width) if support is None else support
    inside = 0
    if allowed is not None:  # changed voxels inside the support: the support and the changed box overlap
        volume_box = box + (slice(0, 1),) if structure.ndim == 2 else box
        overlap = tuple(slice(max(a.start, b.start), min(a.stop, b.stop)) for a, b in zip(volume_box, allowed_box))
        if all(o.stop > o.start for o in overlap):
            mine = tuple(slice(o.start - a.start, o.stop - a.start) for o, a in zip(overlap, volume_box))
            theirs = tuple(slice(o.start - b.start, o.stop - b.start) for o, b in zip(overlap, allowed_box))
            inside = int((as_volume(changed)[mine] & allowed[theirs]).sum())
    sse, sse_roi = float(squared.sum()), float(squared[structure[box]].sum())
    return {
        "psnr": _psnr_from_mse(sse / original.size),
        "psnr_roi": _psnr_from_mse(sse_roi / n_structure) if n_structure else float("nan"),
        "ssim": ssim_changed(original, protected, data_range=1.0, prepare=mapping.to_unit, box=box),
        "max_abs_change": float(change.max()),
        "max_abs_change_255": float(change.max() * 255),
        "changed_voxels": int(changed.sum()),
        "outside_support_changes": int(changed.sum()) - inside,
    }


def _changed_box(
    original: np.ndarray, protected: np.ndarray, changed_slices: Sequence[int] | None
) -> tuple[slice, ...] | None:
    """:func:`umed.metrics.changed_box`, over the range of ``changed_slices`` (last axis) when given."""
    if changed_slices is None or original.ndim < 3:
        return changed_box(original, protected)
    if not changed_slices:
        return None
    first, last = min(changed_slices), max(changed_slices) + 1
    box = changed_box(original[..., first:last], protected[..., first:last])
    if box is None:
        return None
    return (*box[:-1], slice(box[-1].start + first, box[-1].stop + first))


def _psnr_from_mse(mse: float) -> float:
    """PSNR (dB, data_range 1) of a mean squared error, as :func:`umed.metrics.psnr` computes it."""
    return float("inf") if mse == 0.0 else float(10.0 * np.log10(1.0 / mse))


def _check_guarantees(case: Case, metrics: dict[str, float], eps: float) -> None:
    """Refuse to write a case that breaks the promises (budget, support); a bug, never expected."""
    if metrics["outside_support_changes"]:
        raise UmedError(f"{case.image_path}: {metrics['outside_support_changes']} voxels changed outside the support")
    if metrics["max_abs_change"] > eps * (1 + 1e-5) + 1e-7:
        raise UmedError(
            f"{case.image_path}: largest change exceeds the budget "
            f"(expected <= {eps:.6f}, got {metrics['max_abs_change']:.6f})"
        )
