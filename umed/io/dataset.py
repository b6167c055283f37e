"""Cases on disk: read and write one case in any supported format, and find image/mask pairs in a dataset folder.

Formats are detected from the path: ``.nii``/``.nii.gz`` (:mod:`umed.io.nifti`), ``.png``/``.tif``/``.tiff``
(:mod:`umed.io.natural`), or a folder holding one DICOM series (:mod:`umed.io.dicom`). Arrays are always in *file
units* (what a viewer shows: scaled values, Hounsfield units) with the spatial axes only; :class:`umed.case.CaseMeta`
records how they are stored so that :func:`save_case` writes them back the same way.

Layouts understood by :func:`discover_cases`:

- an images folder plus a masks folder, paired by case name (extension and nnU-Net ``_0000`` channel suffix ignored);
- an nnU-Net raw dataset folder (``imagesTr/CASE_0000.nii.gz``, ``labelsTr/CASE.nii.gz``, ``dataset.json``);
- a Medical Segmentation Decathlon task folder (``imagesTr``, ``labelsTr``, ``dataset.json`` with a ``training`` list).
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from umed.case import Case, CaseMeta
from umed.errors import ConfigError, GeometryError, InputError
from umed.io.dicom import dicom_from_stored, dicom_to_stored, is_dicom_dir, load_dicom_series, save_dicom_series
from umed.io.natural import is_natural_path, load_natural, natural_case_id, natural_to_stored, save_natural
from umed.io.nifti import from_stored, is_nifti_path, load_nifti, nifti_case_id, save_nifti, to_stored
from umed.registry import Registry

__all__ = [
    "load_case",
    "load_mask",
    "save_case",
    "quantize",
    "discover_cases",
    "check_output_location",
    "output_path_for",
    "case_name",
    "FORMATS",
    "FileFormat",
]

logger = logging.getLogger(__name__)

_CHANNEL_SUFFIX = re.compile(r"^(?P<base>.+)_(?P<channel>\d{4})$")
_SUPPORTED = ".nii.gz, .nii, .png, .tif, .tiff files or DICOM series folders"


def case_name(path: Path) -> str | None:
    """The case name of an image path (extension removed), or ``None`` when the path is not a supported image.

    Args:
        path: a NIfTI, PNG or TIFF file, or a DICOM series folder.
    """
    path = Path(path)
    if path.name.startswith("."):
        return None
    if path.is_dir():
        return path.name if is_dicom_dir(path) else None
    if is_nifti_path(path):
        return nifti_case_id(path)
    if is_natural_path(path):
        return natural_case_id(path)
    return None


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
        >>> image, meta = load_case(Path("volumes/brats_2013_pat0001_1.nii.gz"))  # doctest: +SKIP
        >>> image.shape, meta.disk_dtype
        ((240, 240, 155), dtype('float32'))
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
    if array.dtype.kind == "f":
        finite = np.isfinite(array)
        if not finite.all():
            raise InputError(f"{path}: NaN or Inf in the label map (expected integer labels, got "
                             f"{int((~finite).sum())} non-finite voxels)")
        fractional = int(np.count_nonzero(array != np.round(array)))
        if fractional:
            raise InputError(f"{path}: non-integer labels (expected integer label values, got {fractional} voxels "
                             "with a fractional value); use nearest-neighbour interpolation when resampling masks")
    elif array.dtype.kind not in "iub":
        raise InputError(f"{path}: unsupported label dtype (expected integers, got {array.dtype})")
    if array.size == 0:
        return array.astype(np.int16)
    low, high = int(array.min()), int(array.max())
    return array.astype(_label_dtype(low, high))


def _grid_transform(image_meta: CaseMeta, mask_meta: CaseMeta, atol: float) -> tuple[tuple[int, ...], tuple[bool, ...]] | None:
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
        raise GeometryError(f"{path}: mask shape differs from the image {image_meta.source} (expected "
                            f"{tuple(image_meta.shape)}, got {tuple(labels.shape)})")
    if not geometric:
        return labels, meta
    if not np.allclose(meta.spacing, image_meta.spacing, rtol=0, atol=atol):
        raise GeometryError(f"{path}: mask spacing differs from the image {image_meta.source} beyond {atol} mm "
                            f"(expected {_fmt(image_meta.spacing)}, got {_fmt(meta.spacing)})")
    if not same_affine:
        difference = float(np.abs(meta.affine - image_meta.affine).max())
        raise GeometryError(f"{path}: mask affine differs from the image {image_meta.source} by {difference:.4g} mm "
                            f"(expected {_fmt(image_meta.affine[:3].ravel())}, got {_fmt(meta.affine[:3].ravel())})")
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


def _quantize_nifti(array: np.ndarray, meta: CaseMeta) -> np.ndarray:
    stored = to_stored(array, meta.disk_dtype, meta.slope, meta.intercept, source=meta.source)
    return from_stored(stored, meta.disk_dtype, meta.slope, meta.intercept)


def _quantize_natural(array: np.ndarray, meta: CaseMeta) -> np.ndarray:
    return from_stored(natural_to_stored(array, meta), meta.disk_dtype, 1.0, 0.0)


_NATURAL = FileFormat(_quantize_natural, lambda array, meta, path, derived: save_natural(array, meta, path))
FORMATS: Registry[FileFormat] = Registry("format", {
    "nifti": FileFormat(_quantize_nifti, lambda array, meta, path, derived: save_nifti(array, meta, path)),
    "dicom": FileFormat(lambda array, meta: dicom_from_stored(dicom_to_stored(array, meta), meta),
                        lambda array, meta, path, derived: save_dicom_series(array, meta, path, derived=derived)),
    "png": _NATURAL,
    "tiff": _NATURAL,
})
"""``CaseMeta.format`` -> :class:`FileFormat`: the one place a format name chooses code."""


def _format(meta: CaseMeta) -> FileFormat:
    if meta.format not in FORMATS:
        raise InputError(f"{meta.source}: unknown format (expected {', '.join(FORMATS.names())}, got {meta.format})")
    return FORMATS[meta.format]


def output_path_for(case: Case, meta: CaseMeta, out_dir: Path) -> Path:
    """Where a case's output goes: the input's file (or DICOM folder) name, in ``out_dir``."""
    del meta  # the name alone decides; kept in the signature so the format could rename in the future
    return Path(out_dir) / Path(case.image_path).name


def check_output_location(out_dir: Path, input_dirs: Sequence[Path]) -> None:
    """Refuse an output folder that is an input folder or lies inside one (it would mix outputs with inputs).

    Args:
        out_dir: the output folder (need not exist).
        input_dirs: the image and mask folders.

    Raises:
        ConfigError: ``out_dir`` equals or is inside one of ``input_dirs``.
    """
    out = Path(out_dir).expanduser().resolve()
    for folder in input_dirs:
        if folder is None:
            continue
        source = Path(folder).expanduser().resolve()
        if out == source or source in out.parents:
            raise ConfigError(f"{out_dir}: the output folder is inside the input folder {folder} (expected a folder "
                              "outside every input, got one inside)")


# -------------------------------------------------------------------------------------------------------- discovery


@dataclass(frozen=True)
class _Entry:
    path: Path
    name: str  # file name without extension
    key: str  # name without the nnU-Net channel suffix


def _entries(folder: Path) -> list[_Entry]:
    entries = []
    for path in sorted(folder.iterdir()):
        name = case_name(path)
        if name is None:
            continue
        name = unicodedata.normalize("NFC", name)  # macOS writes names in NFD: "é" must pair with "é"
        match = _CHANNEL_SUFFIX.match(name)
        entries.append(_Entry(path, name, match.group("base") if match else name))
    return entries


def _require_folder(folder: Path, what: str) -> Path:
    folder = Path(folder)
    if not folder.exists():
        raise InputError(f"{folder}: {what} folder not found (expected an existing folder, got nothing)")
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder (expected a {what} folder, got a file)")
    return folder


def _pair(images: list[_Entry], masks: list[_Entry] | None, folder: Path) -> list[Case]:
    by_name: dict[str, Path] = {}
    by_key: dict[str, list[Path]] = {}
    for entry in masks or []:
        if entry.name in by_name:
            raise InputError(f"{entry.path}: two masks for case {entry.name} (expected one, got {by_name[entry.name].name} "
                             f"and {entry.path.name})")
        by_name[entry.name] = entry.path
        by_key.setdefault(entry.key, []).append(entry.path)
    channels: dict[str, int] = {}
    for entry in images:
        channels[entry.key] = channels.get(entry.key, 0) + 1
    cases: dict[str, Case] = {}
    for entry in images:
        single = channels[entry.key] == 1
        if entry.name in by_name:
            case_id, mask = entry.name, by_name[entry.name]
        elif entry.key in by_name:  # nnU-Net: CASE_0000 image, CASE mask
            case_id, mask = (entry.key if single else entry.name), by_name[entry.key]
        elif len(by_key.get(entry.key, [])) == 1:  # both carry a channel suffix
            case_id, mask = (entry.key if single else entry.name), by_key[entry.key][0]
        else:
            case_id, mask = (entry.key if single and entry.name.endswith("_0000") else entry.name), None
        if case_id in cases:
            raise InputError(f"{entry.path}: two images for case {case_id} (expected one, got "
                             f"{cases[case_id].image_path.name} and {entry.path.name})")
        cases[case_id] = Case(case_id, entry.path, mask)
    if not cases:
        raise InputError(f"{folder}: no images (expected {_SUPPORTED}, got none)")
    used = {case.mask_path for case in cases.values()}
    for entry in masks or []:
        if entry.path not in used:
            logger.warning("%s: mask without an image (no image named %s); ignored", entry.path, entry.name)
    return [cases[key] for key in sorted(cases)]


def _decathlon(root: Path, document: dict) -> list[Case]:
    cases: dict[str, Case] = {}
    for item in document.get("training", []):
        if not isinstance(item, dict) or "image" not in item:
            raise InputError(f"{root / 'dataset.json'}: invalid training entry (expected {{'image': ..., 'label': ...}}, "
                             f"got {type(item).__name__})")
        image = (root / item["image"]).resolve()
        label = (root / item["label"]).resolve() if item.get("label") else None
        name = case_name(image) or image.name
        cases[name] = Case(name, image, label if label is not None and label.exists() else None)
    if not cases:
        raise InputError(f"{root / 'dataset.json'}: no training cases (expected a non-empty 'training' list, got none)")
    return [cases[key] for key in sorted(cases)]


def discover_cases(images: Path, masks: Path | None = None) -> list[Case]:
    """Find the cases of a dataset and pair each image with its label map.

    Args:
        images: a folder of images (NIfTI, PNG/TIFF files, DICOM series sub-folders), a single DICOM series folder,
            or an nnU-Net / Decathlon dataset folder (``imagesTr``, ``labelsTr``, ``dataset.json``) when ``masks``
            is ``None``.
        masks: a folder of label maps paired with the images by case name (extension and ``_0000`` channel suffix
            ignored); ``None`` for the dataset layouts or for images without masks.

    Returns:
        One :class:`Case` per image, sorted by ``case_id``; ``mask_path`` is ``None`` when no mask matches (reported
        by :func:`umed.io.validate_case`). When a case has several channel files (``_0000``, ``_0001``) each is its
        own case, named with its channel suffix, and all share the mask.

    Raises:
        InputError: a folder that does not exist or holds no image, two images or masks with the same case name,
            an invalid ``dataset.json``.
    """
    images = _require_folder(Path(images), "images")
    if masks is not None:
        masks = _require_folder(Path(masks), "masks")
        return _pair(_entries(images), _entries(masks), images)
    if (images / "imagesTr").is_dir():
        document: dict = {}
        json_path = images / "dataset.json"
        if json_path.is_file():
            try:
                document = json.loads(json_path.read_text())
            except (OSError, ValueError) as error:
                raise InputError(f"{json_path}: unreadable dataset.json ({error})") from error
            if not isinstance(document, dict):
                raise InputError(f"{json_path}: invalid dataset.json (expected an object, got {type(document).__name__})")
        if isinstance(document.get("training"), list) and document["training"]:
            return _decathlon(images, document)
        labels = images / "labelsTr"
        return _pair(_entries(images / "imagesTr"), _entries(labels) if labels.is_dir() else None, images / "imagesTr")
    entries = _entries(images)
    if not entries and is_dicom_dir(images):  # the folder is itself one series
        return [Case(images.name, images, None)]
    return _pair(entries, None, images)
