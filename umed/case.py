"""Typed records that travel through umed: a case on disk, its metadata, its result.

These are frozen dataclasses rather than loose dicts so that every field is named, typed and documented once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

__all__ = ["Case", "CaseMeta", "CaseResult", "ImageFormat"]

ImageFormat = Literal["nifti", "dicom", "png", "tiff"]


@dataclass(frozen=True)
class Case:
    """One image and its label map, as found on disk by :func:`umed.io.discover_cases`.

    Attributes:
        case_id: name shared by image and mask (extension and nnU-Net ``_0000`` channel suffix removed).
        image_path: a NIfTI file, a PNG/TIFF file, or a folder holding one DICOM series.
        mask_path: the label map (any supported format), or ``None`` when it is missing.
    """

    case_id: str
    image_path: Path
    mask_path: Path | None


@dataclass(frozen=True)
class CaseMeta:
    """Everything needed to write an array back exactly as the input was stored.

    The array returned with it by :func:`umed.io.load_case` is in *file units* (the values a viewer shows: Hounsfield
    units for CT, scaled values when the NIfTI header has ``scl_slope``); ``disk_dtype``, ``slope`` and ``intercept``
    say how they are stored, as nibabel's ``get_data_dtype``/``get_slope_inter`` do.

    Attributes:
        case_id: the case name.
        source: path of the file or DICOM folder it came from.
        format: ``"nifti"``, ``"dicom"``, ``"png"`` or ``"tiff"``.
        shape: spatial shape of the array, ``(X, Y, Z)`` for volumes (nibabel order, also for DICOM), ``(H, W)`` for 2D.
        affine: 4x4 voxel-to-world (RAS+, mm) matrix; identity scaled by spacing for 2D images.
        spacing: voxel size in mm along each array axis.
        disk_dtype: dtype of the stored voxels (before scaling).
        slope: multiplier from stored to file units (1.0 when not scaled).
        intercept: offset from stored to file units (0.0 when not scaled).
        header: format-specific header: a nibabel header, a list of pydicom Datasets (one per slice, in array order)
            or a dict of PNG/TIFF info. Never modified in place.
    """

    case_id: str
    source: Path
    format: ImageFormat
    shape: tuple[int, ...]
    affine: np.ndarray
    spacing: tuple[float, ...]
    disk_dtype: np.dtype
    slope: float = 1.0
    intercept: float = 0.0
    header: Any = field(default=None, repr=False, compare=False)

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions (2 or 3)."""
        return len(self.shape)


@dataclass(frozen=True)
class CaseResult:
    """What happened to one case in a batch run (protect, audit). ``error`` is set when the case failed."""

    case_id: str
    status: Literal["protected", "skipped", "passed_through", "failed"]
    output_path: Path | None = None
    error: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
