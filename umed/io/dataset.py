"""Cases on disk: read and write one case in any supported format (finding the cases is :mod:`umed.io.discover`).

Formats are detected from the path: ``.nii``/``.nii.gz`` (:mod:`umed.io.nifti`), ``.png``/``.tif``/``.tiff``
(:mod:`umed.io.natural`), or a folder holding one DICOM series (:mod:`umed.io.dicom`). Arrays are always in *file
units* (what a viewer shows: scaled values, Hounsfield units) with the spatial axes only; :class:`umed.case.CaseMeta`
records how they are stored so that :func:`save_case` writes them back the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from umed.case import CaseMeta
from umed.errors import GeometryError, InputError
from umed.io.dicom import dicom_from_stored, dicom_quantize_part, dicom_to_stored, load_dicom_series, save_dicom_series
from umed.io.discover import SUPPORTED as _SUPPORTED
from umed.io.natural import is_natural_path, load_natural, natural_to_stored, save_natural
from umed.io.nifti import from_stored, is_nifti_path, load_nifti, save_nifti, to_stored
from umed.registry import Registry

__all__ = [
    "load_case",
    "load_mask",
    "save_case",
    "quantize",
    "FORMATS",
    "FileFormat",
]

logger = logging.getLogger(__name__)


def load_case(path: Path) -> tuple[np.ndarray, CaseMeta]:
    """Read one image in file units.

    Args:
        path: ``.nii``/``.nii.gz``, ``.png``, ``.tif``/``.tiff``, or a folder holding one DICOM series.

    Returns:
        ``(array, meta)``: ``array`` is ``(X, Y, Z)`` for volumes (nibabel's order, also for DICOM: axial slices
        along the last axis) or ``(H, W)`` for 2D images; float64 when a slope/intercept applies (NIfTI
        ``scl_slope``/``scl_inter``, DICOM ``RescaleSlope``/``RescaleIntercept``), else the on-disk dtype.

    Raises:
        InputError: missing, unreadable or truncated file, unsupported format, more than one channel.

    Example:
        >>> import tempfile
        >>> import nibabel as nib
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = Path(tmp.name) / "case_001.nii.gz"
        >>> nib.save(nib.Nifti1Image(np.zeros((4, 5, 3), np.int16), np.diag([0.5, 0.5, 2.0, 1.0])), path)
        >>> image, meta = load_case(path)
        >>> image.shape, meta.disk_dtype, meta.spacing, meta.case_id
        ((4, 5, 3), dtype('int16'), (0.5, 0.5, 2.0), 'case_001')
        >>> tmp.cleanup()
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found (expected an image file or a DICOM folder, got nothing)")
    if path.is_dir():
        return load_dicom_series(path)
    if is_nifti_path(path):
        return load_nifti(path)
    if is_natural_path(path):
        return load_natural(path)
    raise InputError(f"{path}: unsupported image format (expected {_SUPPORTED}, got {path.suffix or 'no suffix'})")


def _label_dtype(low: int, high: int) -> np.dtype:
    for dtype in (np.int16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


def _as_labels(array: np.ndarray, path: Path) -> np.ndarray:
    if array.size == 0:
        return array.astype(np.int16)
    if array.dtype.kind not in "iubf":
        raise InputError(f"{path}: unsupported label dtype (expected integers, got {array.dtype})")
    if array.dtype.kind in "iub" and array.dtype.itemsize <= 2 and array.dtype != np.uint16:
        return array.astype(np.int16)  # every value fits: no range pass
    low, high = array.min(), array.max()  # NaN or Inf anywhere shows in these (float maps)
    if array.dtype.kind == "f" and not (np.isfinite(low) and np.isfinite(high)):
        raise InputError(
            f"{path}: NaN or Inf in the label map (expected integer labels, got "
            f"{int(np.count_nonzero(~np.isfinite(array)))} non-finite voxels)"
        )
    if array.dtype.kind != "f":
        return array.astype(_label_dtype(int(low), int(high)))
    labels = array.astype(_label_dtype(int(np.floor(low)), int(np.ceil(high))))
    if not np.array_equal(labels, array):
        fractional = int(np.count_nonzero(array != np.round(array)))
        if not fractional:
            raise InputError(f"{path}: label values out of the integer range (got {low:g} to {high:g})")
        raise InputError(
            f"{path}: non-integer labels (expected integer label values, got {fractional} voxels "
            "with a fractional value); use nearest-neighbour interpolation when resampling masks"
        )
    return labels


def _grid_transform(
    image_meta: CaseMeta, mask_meta: CaseMeta, atol: float
) -> tuple[tuple[int, ...], tuple[bool, ...]] | None:
    """If the mask's voxel grid is the image's with axes permuted or flipped, ``(axes, flips)`` to reorient it."""
    if len(image_meta.shape) != len(mask_meta.shape):
        return None
    n = len(image_meta.shape)
    try:
        transform = np.linalg.inv(mask_meta.affine) @ image_meta.affine  # image voxel -> mask voxel
    except np.linalg.LinAlgError:
        return None
    rotation = transform[:n, :n]
    signed = np.round(rotation)
    if not np.allclose(rotation, signed, atol=1e-4) or not np.all(np.abs(signed).sum(axis=0) == 1):
        return None
    if not np.all(np.abs(signed).sum(axis=1) == 1):
        return None
    axes = tuple(int(np.flatnonzero(signed[:, i])[0]) for i in range(n))  # image axis i -> mask axis axes[i]
    flips = tuple(bool(signed[axes[i], i] < 0) for i in range(n))
    for i in range(n):
        size = image_meta.shape[i]
        if mask_meta.shape[axes[i]] != size:
            return None
        start = transform[axes[i], 3]
        expected = size - 1 if flips[i] else 0
        if abs(start - expected) > atol / max(min(mask_meta.spacing), 1e-9):
            return None
    if axes == tuple(range(n)) and not any(flips):
        return None  # same grid; the affines differ in a way this cannot explain
    return axes, flips


def load_mask(path: Path, *, image_meta: CaseMeta | None = None, atol: float = 1e-3) -> tuple[np.ndarray, CaseMeta]:
    """Read a label map and check it against its image.

    Geometry is compared in world space (RAS+ mm), so an image and its mask may be in different formats (a DICOM
    series and a NIfTI mask): the affines must agree within ``atol`` mm. When the mask's grid is the image's grid
    with axes flipped or permuted (e.g. dcm2niix output beside the DICOM series), the returned array is
    reoriented to the image's voxel order; ``meta`` still describes the file as stored. PNG/TIFF carry no
    geometry, so only shapes are compared when either side is one.

    Args:
        path: the label file or DICOM folder.
        image_meta: the image's metadata; no geometry check when ``None``.
        atol: tolerance on affine entries (mm) and on spacing (mm).

    Returns:
        ``(labels, meta)``: ``labels`` integer (int16, or int32/int64 when the values need it), the image's shape.

    Raises:
        InputError: unreadable file, NaN/Inf or non-integer labels.
        GeometryError: shape, affine or spacing differ from the image's beyond ``atol``.
    """
    path = Path(path)
    array, meta = load_case(path)
    labels = _as_labels(array, path)
    if image_meta is None:
        return labels, meta
    geometric = image_meta.format not in ("png", "tiff") and meta.format not in ("png", "tiff")
    same_affine = np.allclose(meta.affine, image_meta.affine, rtol=0, atol=atol)
    if geometric and not same_affine:
        reorient = _grid_transform(image_meta, meta, atol)
        if reorient is not None:
            axes, flips = reorient
            labels = np.transpose(labels, axes)
            for axis, flip in enumerate(flips):
                if flip:
                    labels = np.flip(labels, axis=axis)
            return np.ascontiguousarray(labels), meta
    if tuple(labels.shape) != tuple(image_meta.shape):
        raise GeometryError(
            f"{path}: mask shape differs from the image {image_meta.source} (expected "
            f"{tuple(image_meta.shape)}, got {tuple(labels.shape)})"
        )
    if not geometric:
        return labels, meta
    if not np.allclose(meta.spacing, image_meta.spacing, rtol=0, atol=atol):
        raise GeometryError(
            f"{path}: mask spacing differs from the image {image_meta.source} beyond {atol} mm "
            f"(expected {_fmt(image_meta.spacing)}, got {_fmt(meta.spacing)})"
        )
    if not same_affine:
        difference = float(np.abs(meta.affine - image_meta.affine).max())
        raise GeometryError(
            f"{path}: mask affine differs from the image {image_meta.source} by {difference:.4g} mm "
            f"(expected {_fmt(image_meta.affine[:3].ravel())}, got {_fmt(meta.affine[:3].ravel())})"
        )
    return labels, meta


def _fmt(values: Sequence[float] | np.ndarray) -> str:
    return "(" + ", ".join(f"{float(v):.6g}" for v in values) + ")"


def quantize(array_file_units: np.ndarray, meta: CaseMeta) -> np.ndarray:
    """The nearest values the case's file can store, in file units.

    ``round((x - intercept) / slope)`` clipped to the on-disk dtype's range, mapped back with ``* slope +
    intercept``; float dtypes are cast to their precision. Applied to an array :func:`load_case` returned it is
    the identity, and :func:`save_case` writes exactly these values.

    Args:
        array_file_units: ``meta.shape`` (or any shape for formats with one scaling), file units.
        meta: the case's metadata.

    Returns:
        Array of the input's shape, dtype as :func:`load_case` returns it for this file (float64 when scaled, else
        the on-disk dtype).

    Raises:
        InputError: NaN/Inf values for an integer dtype.
    """
    return _format(meta).quantize(np.asarray(array_file_units), meta)


def quantize_slices(array_file_units: np.ndarray, meta: CaseMeta, groups: Sequence[Sequence[int]]) -> np.ndarray:
    """:func:`quantize` where only the slices in ``groups`` (lists of indices along the last axis) can hold values
    the file does not store: the other slices pass untouched (values :func:`load_case` returned), and the slices are
    rounded a group at a time, with their own rescale for a per-slice format (DICOM). A protected volume changes a
    few of its slices: this is a few slices' work instead of the whole volume's.

    Returns:
        The input array (of 3 or more dimensions), changed in place; a 2D image is quantized whole (a new array).
    """
    array = np.asarray(array_file_units)
    fmt = _format(meta)
    if array.ndim < 3:
        return np.asarray(fmt.quantize(array, meta)).astype(array.dtype, copy=False)
    for group in groups:
        indices = list(group)
        part = array[..., indices]
        array[..., indices] = (
            fmt.quantize(part, meta) if fmt.quantize_part is None else fmt.quantize_part(part, meta, indices)
        )
    return array


def save_case(array_file_units: np.ndarray, meta: CaseMeta, path: Path, *, derived: bool = True) -> Path:
    """Write an array in the case's own format, atomically (temporary file or folder in the target folder).

    NIfTI keeps the header bytes, on-disk dtype and scaling exactly; DICOM keeps every tag of each slice (and, with
    ``derived=True``, gets new UIDs, ``ImageType`` DERIVED and a ``DerivationDescription``); PNG/TIFF keep the dtype.
    Values are first rounded as :func:`quantize` does. Saving an unmodified array reproduces the voxels bit for bit.

    Args:
        array_file_units: ``meta.shape``, file units.
        meta: the case's metadata from :func:`load_case`.
        path: target file (or DICOM folder); see :func:`output_path_for`.
        derived: mark a DICOM series as derived (ignored by the other formats, whose header is kept as is).

    Returns:
        The written path.

    Raises:
        GeometryError: the array's shape is not ``meta.shape``.
        InputError: NaN/Inf values for an integer dtype, or ``meta`` lacks the source header.
        OutputError: the target cannot be written.
    """
    return _format(meta).save(array_file_units, meta, Path(path), derived)


@dataclass(frozen=True)
class FileFormat:
    """How one on-disk format rounds values to what it stores and writes a case (see :data:`FORMATS`)."""

    quantize: Callable[[np.ndarray, CaseMeta], np.ndarray]
    save: Callable[[np.ndarray, CaseMeta, Path, bool], Path]
    # quantize some slices ``(..., k)`` given their indices; None: one scaling for every voxel, quantize does
    quantize_part: Callable[[np.ndarray, CaseMeta, Sequence[int]], np.ndarray] | None = None


def _quantize_nifti(array: np.ndarray, meta: CaseMeta) -> np.ndarray:
    stored = to_stored(array, meta.disk_dtype, meta.slope, meta.intercept, source=meta.source)
    return from_stored(stored, meta.disk_dtype, meta.slope, meta.intercept)


def _quantize_natural(array: np.ndarray, meta: CaseMeta) -> np.ndarray:
    return from_stored(natural_to_stored(array, meta), meta.disk_dtype, 1.0, 0.0)


_NATURAL = FileFormat(_quantize_natural, lambda array, meta, path, derived: save_natural(array, meta, path))
FORMATS: Registry[FileFormat] = Registry(
    "format",
    {
        "nifti": FileFormat(_quantize_nifti, lambda array, meta, path, derived: save_nifti(array, meta, path)),
        "dicom": FileFormat(
            lambda array, meta: dicom_from_stored(dicom_to_stored(array, meta), meta),
            lambda array, meta, path, derived: save_dicom_series(array, meta, path, derived=derived),
            dicom_quantize_part,  # per-slice rescale
        ),
        "png": _NATURAL,
        "tiff": _NATURAL,
    },
)
"""``CaseMeta.format`` -> :class:`FileFormat`: the one place a format name chooses code."""


def _format(meta: CaseMeta) -> FileFormat:
    if meta.format not in FORMATS:
        raise InputError(f"{meta.source}: unknown format (expected {', '.join(FORMATS.names())}, got {meta.format})")
    return FORMATS[meta.format]
