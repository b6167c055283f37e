"""The audit's data in: pair the clean cases with their protected images and label maps, split them into training and
test cases, and load each pair in umed's normalised space with its imperceptibility (:class:`CaseAudit`).

Example:
    >>> import numpy as np
    >>> structure = np.zeros((7, 7), bool); structure[3, 3] = True
    >>> int(roi_mask(structure, 1).sum()), int(roi_mask(structure, 0).sum())
    (5, 1)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from umed.audit.config import DEFAULT_SPLIT, AuditConfig
from umed.audit.records import CaseAudit
from umed.case import Case
from umed.errors import ConfigError, GeometryError, InputError
from umed.metrics import max_abs_change, psnr, ssim

__all__ = ["LoadedCase", "load_pair", "pair_cases", "roi_mask", "split_cases"]


@dataclass
class LoadedCase:
    """One case after loading: normalised clean and protected images, structure labels, spacing, imperceptibility
    (:func:`umed.audit.run.run_audit` drops the loaded cases once the slices are cut)."""

    case_id: str
    clean: np.ndarray  # (X, Y, Z) or (H, W) float32, normalised
    protected: np.ndarray
    labels: np.ndarray  # structure labels kept, others 0, same shape
    spacing: tuple[float, ...]
    audit: CaseAudit


def pair_cases(cfg: AuditConfig) -> list[tuple[Case, Path | None]]:
    """``(clean case with mask, protected image path)`` for every case, sorted by case id; the path is ``None`` for
    a case that was not protected (a data owner protects only what is released: such cases can only be test cases,
    checked by :func:`split_cases`)."""
    from umed.io import discover_cases

    clean = discover_cases(cfg.clean, cfg.masks)
    protected = {case.case_id: case for case in discover_cases(cfg.protected, None)}
    clean_ids = {case.case_id for case in clean}
    extra = sorted(set(protected) - clean_ids)
    if extra:
        raise InputError(
            f"{cfg.protected}: protected cases without a clean case in {cfg.clean} "
            f"(expected the same case names; unexpected {extra[:5]})"
        )
    if not set(protected) & clean_ids:
        raise InputError(f"{cfg.protected}: no protected case of {cfg.clean} (expected the same case names)")
    return [(case, protected[case.case_id].image_path if case.case_id in protected else None) for case in clean]


def split_cases(ids: list[str], cfg: AuditConfig, unprotected: list[str] | None = None) -> tuple[list[str], list[str]]:
    """``(training ids, test ids)``: the given test cases, else the cases that were not protected (the owner's
    private ones), else a seeded draw of ``split``; a training case must have been protected."""
    unprotected = sorted(unprotected or [])
    if cfg.test_cases is None and cfg.split is None and unprotected:
        test = unprotected
        train = [case_id for case_id in ids if case_id not in test]
        if not train:
            raise ConfigError(f"{cfg.protected}: no case was protected (expected the training cases there)")
        return train, test
    train, test = _split(ids, cfg)
    lacking = sorted(set(train) & set(unprotected))
    if lacking:
        raise InputError(
            f"{cfg.protected}: training case(s) {lacking[:5]} have no protected version (expected every training "
            "case protected; cases that were not protected can only be test cases)"
        )
    return train, test


def _split(ids: list[str], cfg: AuditConfig) -> tuple[list[str], list[str]]:
    if cfg.test_cases is not None:
        unknown = sorted(set(cfg.test_cases) - set(ids))
        if unknown:
            raise ConfigError(f"test_cases: unknown case ids {unknown[:5]} (expected some of {ids[:10]})")
        test = sorted(set(cfg.test_cases))
    else:
        if len(ids) < 2:
            raise ConfigError(f"split: need at least 2 cases to hold some out for testing (got {len(ids)})")
        fraction = DEFAULT_SPLIT if cfg.split is None else cfg.split
        n_test = min(max(1, int(round(fraction * len(ids)))), len(ids) - 1)
        rng = np.random.default_rng(cfg.seed)
        test = sorted(ids[i] for i in rng.permutation(len(ids))[:n_test])
    train = [case_id for case_id in ids if case_id not in test]
    if not train:
        raise ConfigError(
            f"test_cases: every case is a test case (expected at least one training case, got {len(ids)} test)"
        )
    return train, test


def roi_mask(structure: np.ndarray, dilation: int) -> np.ndarray:
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


def load_pair(case: Case, protected_path: Path | None, role: str, cfg: AuditConfig) -> LoadedCase:
    """Load a clean case and its protected version (``None``: a test case that was never protected, which the
    victims only see clean)."""
    from umed.intensity import fit_mapping
    from umed.io import load_case, validate_case
    from umed.regions import foreground

    image, meta, labels, _ = validate_case(case)
    protected, pmeta = (image, meta) if protected_path is None else load_case(protected_path)
    if protected.shape != image.shape:
        raise GeometryError(
            f"{protected_path}: protected image differs in shape from {case.image_path} "
            f"(expected {image.shape}, got {protected.shape})"
        )
    if not np.allclose(np.asarray(pmeta.affine), np.asarray(meta.affine), atol=1e-3):
        raise GeometryError(
            f"{protected_path}: protected image differs in affine from {case.image_path} (expected the same)"
        )
    mapping = fit_mapping(image, mode="percentile", percentiles=(0.5, 99.5))
    clean_u, prot_u = mapping.to_unit(image), mapping.to_unit(protected)
    structure = foreground(labels, cfg.structure_labels)
    roi = roi_mask(structure, cfg.roi_dilation)
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
    return LoadedCase(case.case_id, clean_u, prot_u, kept, tuple(float(s) for s in meta.spacing), audit)
