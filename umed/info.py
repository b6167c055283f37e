"""What a dataset holds, case by case: format, geometry, dtype, intensity range, labels, and what is wrong with it.

:func:`dataset_info` is the Python side of ``umed info``: it pairs images and masks as ``umed protect`` would, runs
the same validation on each case and records each problem instead of stopping, so one bad file does not hide the
state of the others.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from umed.errors import UmedError

__all__ = ["CaseInfo", "dataset_info"]


@dataclass(frozen=True)
class CaseInfo:
    """Summary of one case.

    Attributes:
        case_id: the case name.
        image_path: the image file or DICOM folder.
        mask_path: the label map, or ``None``.
        format: ``"nifti"``, ``"dicom"``, ``"png"``, ``"tiff"``; ``None`` if the image could not be read.
        shape: spatial shape (``(X, Y, Z)`` or ``(H, W)``).
        spacing: voxel size in mm along each axis (1.0 for PNG/TIFF).
        dtype: the on-disk dtype (``"int16"``, ``"float32"``...).
        slope: stored-to-file-units multiplier.
        intercept: stored-to-file-units offset.
        intensity_min: smallest image value, file units.
        intensity_max: largest image value, file units.
        labels: label values present in the mask (0 included when present).
        foreground_fraction: fraction of voxels with a label other than 0 (0..1).
        error: the validation error (``"{path}: {problem} (expected ..., got ...)"``), ``None`` when the case is good.
        warnings: problems that do not stop protection (e.g. an empty mask: the case is passed through unchanged).
    """

    case_id: str
    image_path: Path
    mask_path: Path | None
    format: str | None = None
    shape: tuple[int, ...] | None = None
    spacing: tuple[float, ...] | None = None
    dtype: str | None = None
    slope: float | None = None
    intercept: float | None = None
    intensity_min: float | None = None
    intensity_max: float | None = None
    labels: tuple[int, ...] | None = None
    foreground_fraction: float | None = None
    error: str | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        """True when the case passed validation."""
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able copy (paths as strings, tuples as lists)."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, Path):
                out[key] = str(value)
            elif isinstance(value, tuple):
                out[key] = list(value)
        return out


def dataset_info(images: Path, masks: Path | None = None) -> list[CaseInfo]:
    """Describe every case of a dataset, validating each one.

    Masks are required when a masks folder is given or the layout pairs them (nnU-Net, Decathlon, or some images
    already have a mask); a plain images folder without masks is described image by image with no mask error.

    Args:
        images: images folder or nnU-Net / Decathlon dataset folder (see :func:`umed.io.discover_cases`).
        masks: masks folder, or ``None``.

    Returns:
        One :class:`CaseInfo` per case, sorted by case id; failed cases have ``error`` set and the fields that
        could be read filled in.

    Raises:
        InputError: the folder does not exist or holds no image (see :func:`umed.io.discover_cases`).
    """
    from umed.errors import InputError
    from umed.io import check_finite, discover_cases, load_case, load_mask, mask_is_empty

    cases = discover_cases(Path(images), Path(masks) if masks is not None else None)
    masks_expected = masks is not None or any(case.mask_path is not None for case in cases)
    infos = []
    for case in cases:
        values: dict[str, Any] = {"case_id": case.case_id, "image_path": case.image_path, "mask_path": case.mask_path}
        warnings: list[str] = []
        try:
            image, meta = load_case(case.image_path)
            values.update(
                format=meta.format,
                shape=tuple(int(n) for n in meta.shape),
                spacing=tuple(round(float(v), 6) for v in meta.spacing),
                dtype=str(np.dtype(meta.disk_dtype)),
                slope=float(meta.slope),
                intercept=float(meta.intercept),
            )
            if image.size:
                finite = image[np.isfinite(image)] if image.dtype.kind == "f" else image
                if finite.size:
                    values.update(intensity_min=float(finite.min()), intensity_max=float(finite.max()))
            check_finite(image, case.image_path)
            del image
            if case.mask_path is None:
                if masks_expected:
                    raise InputError(
                        f"{case.image_path}: missing mask (expected a label map for case {case.case_id}, got none)"
                    )
            else:
                labels, _ = load_mask(case.mask_path, image_meta=meta)
                present = np.unique(labels)
                values.update(
                    labels=tuple(int(v) for v in present),
                    foreground_fraction=float(np.count_nonzero(labels) / labels.size) if labels.size else 0.0,
                )
                if mask_is_empty(labels):
                    warnings.append(
                        f"{case.mask_path}: empty mask (no label > 0); protect passes the case through unchanged"
                    )
        except UmedError as error:
            values["error"] = str(error)
        infos.append(CaseInfo(**values, warnings=tuple(warnings)))
    return infos
