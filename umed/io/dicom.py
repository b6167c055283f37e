"""DICOM series (one folder, one file per slice) read into nibabel's axis order and written back as a derived series.

Reading: every file of the folder is read with pydicom, the slices are sorted along the slice normal, and each
slice's pixel array ``(Rows, Columns)`` is transposed so that the volume is ``(X, Y, Z)`` with X along the row
direction (``ImageOrientationPatient[:3]``), Y along the column direction and Z the slice order, as nibabel and
dcm2niix give it. The affine maps those indices to RAS+ millimetres (DICOM's LPS with x and y negated).

Writing: each slice's dataset is copied with every tag (patient, study, geometry, rescale, bit depth) and gets the
new pixel data. A derived series gets a new Series Instance UID and new SOP Instance UIDs, derived
deterministically from the original ones (``generate_uid(entropy_srcs=[uid, "umed"])``) so that the same input
gives the same output bytes, ``ImageType[0] = "DERIVED"``, a ``DerivationDescription`` and a
``SourceImageSequence`` pointing at the original slice.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from umed.case import CaseMeta
from umed.errors import InputError
from umed.io.atomic import atomic_dir
from umed.io.nifti import from_stored, to_stored
from umed.io.shape import case_array

__all__ = ["load_dicom_series", "save_dicom_series", "is_dicom_dir", "dicom_slice_scaling"]

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_DICOM_SUFFIXES = {"", ".dcm", ".dicom", ".ima"}
_SKIPPED_NAMES = {"dicomdir"}
_UNCOMPRESSED = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}  # implicit and explicit VR little endian
_POSITION_TOLERANCE_MM = 0.01
DERIVATION_DESCRIPTION = "umed: protective perturbation (unlearnable example) added to the pixel data"


def _candidate_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.name.lower() not in _SKIPPED_NAMES
    )


def is_dicom_dir(path: Path) -> bool:
    """True when ``path`` is a folder whose first candidate file starts like a DICOM file (``DICM`` at byte 128)."""
    path = Path(path)
    if not path.is_dir():
        return False
    for file in _candidate_files(path):
        try:
            with open(file, "rb") as handle:
                head = handle.read(132)
        except OSError:
            continue
        if head[128:132] == b"DICM":
            return True
        if file.suffix.lower() in (".dcm", ".dicom", ".ima"):
            return True
    return False


def _float_list(ds: Any, keyword: str, count: int, file: Path) -> np.ndarray:
    value = ds.get(keyword)
    if value is None:
        raise InputError(f"{file}: missing DICOM tag {keyword} (expected {count} numbers, got none)")
    items = list(value) if hasattr(value, "__len__") and not isinstance(value, (str, bytes)) else [value]
    try:
        values = np.asarray([float(v) for v in items], dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InputError(f"{file}: invalid DICOM tag {keyword} (expected {count} numbers, got {value!r})") from error
    if values.size != count:
        raise InputError(f"{file}: invalid DICOM tag {keyword} (expected {count} numbers, got {values.size})")
    return values


def _pixel_dtype(ds: Any, file: Path) -> np.dtype:
    bits = int(ds.get("BitsAllocated", 0))
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    if bits not in (8, 16, 32):
        raise InputError(f"{file}: unsupported BitsAllocated (expected 8, 16 or 32, got {bits})")
    return np.dtype(f"{'i' if signed else 'u'}{bits // 8}")


def dicom_slice_scaling(meta: CaseMeta) -> tuple[np.ndarray, np.ndarray]:
    """Per-slice ``(slopes, intercepts)`` of a DICOM case, each ``(Z,)`` float64 (RescaleSlope/Intercept)."""
    slopes = np.array([float(ds.get("RescaleSlope", 1.0) or 1.0) for ds in meta.header], dtype=np.float64)
    intercepts = np.array([float(ds.get("RescaleIntercept", 0.0) or 0.0) for ds in meta.header], dtype=np.float64)
    return slopes, intercepts


def _scaling_for(meta: CaseMeta) -> tuple[np.ndarray | float, np.ndarray | float]:
    slopes, intercepts = dicom_slice_scaling(meta)
    if np.all(slopes == slopes[0]) and np.all(intercepts == intercepts[0]):
        return float(slopes[0]), float(intercepts[0])
    return slopes, intercepts  # broadcast against (X, Y, Z) along the last axis


def load_dicom_series(folder: Path) -> tuple[np.ndarray, CaseMeta]:
    """Read one DICOM series from a folder.

    Args:
        folder: a folder holding the files of exactly one series (one slice per file). Hidden files, ``DICOMDIR``
            and files with a non-DICOM suffix that pydicom cannot read are ignored.

    Returns:
        ``(array, meta)``: ``array`` is ``(X, Y, Z)`` (X along ``ImageOrientationPatient[:3]``, Z in slice order),
        float64 when ``RescaleSlope``/``RescaleIntercept`` apply (per slice if they vary), else the stored dtype.
        ``meta.header`` is the list of the slices' pydicom Datasets in Z order, without their pixel data;
        ``meta.slope``/``meta.intercept`` are the first slice's rescale values.

    Raises:
        InputError: unreadable or truncated file, no DICOM file, several series, multi-frame or colour images,
            missing geometry tags, slices of different size or orientation, irregular slice spacing.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder (expected a folder holding one DICOM series)")
    slices = [read for file in _candidate_files(folder) if (read := _read_slice(file)) is not None]
    if not slices:
        raise InputError(f"{folder}: no DICOM image file (expected a folder holding one DICOM series, got none)")
    series = {str(ds.get("SeriesInstanceUID", "")) for ds, _, _ in slices}
    if len(series) > 1:
        raise InputError(
            f"{folder}: several DICOM series in one folder (expected 1 series, got {len(series)}); "
            "put each series in its own folder"
        )
    first_ds, _, first_file = slices[0]
    orientation = _float_list(first_ds, "ImageOrientationPatient", 6, first_file)
    row_dir, col_dir = orientation[:3], orientation[3:]
    normal = np.cross(row_dir, col_dir)
    spacing_rc = _float_list(first_ds, "PixelSpacing", 2, first_file)
    positions = _check_slices(slices, orientation, spacing_rc)
    order = np.argsort([float(np.dot(p, normal)) for p in positions], kind="stable")
    slices = [slices[i] for i in order]
    positions_arr = np.asarray([positions[i] for i in order])
    step = _slice_step(folder, positions_arr, first_ds, normal)
    lps = np.eye(4)
    lps[:3, 0] = row_dir * spacing_rc[1]
    lps[:3, 1] = col_dir * spacing_rc[0]
    lps[:3, 2] = step
    lps[:3, 3] = positions_arr[0]
    affine = _LPS_TO_RAS @ lps
    stored = np.stack([pixels.T for _, pixels, _ in slices], axis=-1)
    datasets = [ds for ds, _, _ in slices]
    disk_dtype = stored.dtype
    meta = CaseMeta(
        case_id=folder.name,
        source=folder,
        format="dicom",
        shape=tuple(int(s) for s in stored.shape),
        affine=affine,
        spacing=tuple(float(v) for v in np.sqrt((affine[:3, :3] ** 2).sum(axis=0))),
        disk_dtype=disk_dtype,
        slope=float(datasets[0].get("RescaleSlope", 1.0) or 1.0),
        intercept=float(datasets[0].get("RescaleIntercept", 0.0) or 0.0),
        header=datasets,
    )
    slope, intercept = _scaling_for(meta)
    return from_stored(stored, disk_dtype, slope, intercept), meta


_READ_ERRORS = (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError)


def _read_slice(file: Path) -> tuple[Any, np.ndarray, Path] | None:
    """``(dataset without pixel data, (rows, columns) pixels in the stored dtype, file)`` of one slice file, or
    ``None`` for a file beside the series that is not a DICOM image (a note, a JSON file).

    Raises:
        InputError: an unreadable DICOM file, no pixel data in a ``.dcm`` file, multi-frame or colour images.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(file)
    except InvalidDicomError as error:
        if file.suffix.lower() in _DICOM_SUFFIXES:
            raise InputError(f"{file}: not a readable DICOM file ({error})") from error
        return None
    except _READ_ERRORS as error:
        raise InputError(f"{file}: unreadable DICOM file ({type(error).__name__}: {error})") from error
    if "PixelData" not in ds:
        if file.suffix.lower() in (".dcm", ".dicom", ".ima"):
            raise InputError(f"{file}: DICOM file without pixel data (expected an image slice, got no PixelData)")
        return None
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames != 1:
        raise InputError(f"{file}: multi-frame DICOM is not supported (expected 1 frame per file, got {frames})")
    samples = int(ds.get("SamplesPerPixel", 1))
    if samples != 1:
        raise InputError(f"{file}: umed reads grey images (expected SamplesPerPixel 1, got {samples})")
    try:
        pixels = ds.pixel_array
    except (*_READ_ERRORS, NotImplementedError, RuntimeError) as error:
        raise InputError(f"{file}: unreadable or truncated pixel data ({type(error).__name__}: {error})") from error
    expected = _pixel_dtype(ds, file)
    if pixels.ndim != 2:
        raise InputError(f"{file}: expected one 2D slice (expected 2 dimensions, got shape {pixels.shape})")
    del ds.PixelData
    return ds, pixels.astype(expected, copy=False), file


def _check_slices(
    slices: Sequence[tuple[Any, np.ndarray, Path]], orientation: np.ndarray, spacing_rc: np.ndarray
) -> list[np.ndarray]:
    """Every slice's ``ImagePositionPatient`` (mm), after checking that size, orientation, pixel spacing and dtype
    are the first slice's.

    Raises:
        InputError: a slice that differs (the message names its file).
    """
    first_pixels = slices[0][1]
    positions = []
    for ds, pixels, file in slices:
        if pixels.shape != first_pixels.shape:
            raise InputError(
                f"{file}: slice size differs within the series (expected {first_pixels.shape}, got {pixels.shape})"
            )
        for keyword, count, expected, what in (
            ("ImageOrientationPatient", 6, orientation, "slice orientation"),
            ("PixelSpacing", 2, spacing_rc, "pixel spacing"),
        ):
            value = _float_list(ds, keyword, count, file)
            if not np.allclose(value, expected, atol=1e-4):
                raise InputError(
                    f"{file}: {what} differs within the series (expected {expected.tolist()}, got {value.tolist()})"
                )
        if pixels.dtype != first_pixels.dtype:
            raise InputError(
                f"{file}: pixel dtype differs within the series (expected {first_pixels.dtype}, got {pixels.dtype})"
            )
        positions.append(_float_list(ds, "ImagePositionPatient", 3, file))
    return positions


def _slice_step(folder: Path, positions: np.ndarray, first_ds: Any, normal: np.ndarray) -> np.ndarray:
    """The step (mm, patient LPS) from one slice to the next: the mean of the sorted ``positions`` ``(N, 3)``, or
    for one slice its normal times the slice spacing (``SpacingBetweenSlices``, ``SliceThickness``, else 1 mm).

    Raises:
        InputError: slices at one position, or irregular spacing (missing slices).
    """
    n = len(positions)
    if n == 1:
        thickness = float(first_ds.get("SpacingBetweenSlices", 0) or first_ds.get("SliceThickness", 0) or 1.0)
        return normal * thickness
    step = (positions[-1] - positions[0]) / (n - 1)
    if np.linalg.norm(step) < 1e-6:
        raise InputError(
            f"{folder}: slices share one position (expected distinct ImagePositionPatient, got {n} "
            "slices at the same place)"
        )
    predicted = positions[0] + np.arange(n)[:, None] * step
    deviation = float(np.abs(positions - predicted).max())
    if deviation > _POSITION_TOLERANCE_MM:
        gaps = np.linalg.norm(np.diff(positions, axis=0), axis=1)
        raise InputError(
            f"{folder}: irregular slice spacing or missing slices (expected evenly spaced slices, got "
            f"gaps from {gaps.min():.4g} to {gaps.max():.4g} mm)"
        )
    return step


def dicom_to_stored(array: np.ndarray, meta: CaseMeta, *, source: Path | str | None = None) -> np.ndarray:
    """File units to stored pixel values ``(X, Y, Z)`` in the series' dtype (per-slice rescale, dtype range)."""
    slope, intercept = _scaling_for(meta)
    return to_stored(array, meta.disk_dtype, slope, intercept, source=source or meta.source)


def dicom_quantize_part(part: np.ndarray, meta: CaseMeta, indices: Sequence[int]) -> np.ndarray:
    """:func:`dicom_from_stored` of :func:`dicom_to_stored` on the slices ``indices`` (last axis) of the series only:
    ``part`` is ``(X, Y, len(indices))``, rounded with those slices' own rescale."""
    slope, intercept = _scaling_for(meta)
    if np.ndim(slope):
        slope, intercept = np.asarray(slope)[list(indices)], np.asarray(intercept)[list(indices)]
    stored = to_stored(part, meta.disk_dtype, slope, intercept, source=meta.source)
    return from_stored(stored, meta.disk_dtype, slope, intercept)


def dicom_from_stored(stored: np.ndarray, meta: CaseMeta) -> np.ndarray:
    """Stored pixel values ``(X, Y, Z)`` to file units (per-slice rescale)."""
    slope, intercept = _scaling_for(meta)
    return from_stored(stored, meta.disk_dtype, slope, intercept)


def _derived_uid(uid: str) -> str:
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=[str(uid), "umed"]))


def _file_names(datasets: Sequence[Any]) -> list[str]:
    names = []
    for ds in datasets:
        filename = getattr(ds, "filename", None)
        names.append(Path(filename).name if isinstance(filename, (str, Path)) and filename else "")
    if any(not name for name in names) or len(set(names)) != len(names):
        names = [f"IM{index + 1:05d}.dcm" for index in range(len(datasets))]
    return names


def save_dicom_series(array: np.ndarray, meta: CaseMeta, folder: Path, *, derived: bool = True) -> Path:
    """Write ``array`` as a DICOM series, one file per slice, atomically (temporary folder, then rename).

    Every tag of each source slice is kept, apart from: pixel data; the transfer syntax (compressed or big-endian
    sources are written as explicit VR little endian); ``BitsStored``/``HighBit`` widened to ``BitsAllocated`` only
    if a value needs it; ``Smallest/LargestImagePixelValue`` dropped (they would be stale). With ``derived=True``
    also: new Series and SOP Instance UIDs derived from the old ones, ``ImageType[0] = "DERIVED"``,
    ``DerivationDescription`` and ``SourceImageSequence``. File names are the source files' names.

    Args:
        array: ``meta.shape`` = ``(X, Y, Z)``, file units.
        meta: the :class:`CaseMeta` of :func:`load_dicom_series` (or of a case of the same geometry).
        folder: the series folder to write (replaced if it exists).
        derived: mark the series as derived (the default, for protected data); ``False`` keeps UIDs and ImageType.

    Returns:
        ``folder``.

    Raises:
        GeometryError: ``array``'s shape is not ``meta.shape``.
        InputError: ``meta`` holds no DICOM datasets, or NaN/Inf values.
        OutputError: the folder cannot be written.
    """
    from pydicom.uid import ExplicitVRLittleEndian

    folder = Path(folder)
    array = case_array(array, meta, folder)
    datasets = meta.header
    if not isinstance(datasets, (list, tuple)) or len(datasets) != array.shape[-1]:
        raise InputError(
            f"{folder}: cannot write DICOM without the source datasets (expected {array.shape[-1]} "
            f"datasets, got {len(datasets) if isinstance(datasets, (list, tuple)) else type(datasets).__name__})"
        )
    stored = dicom_to_stored(array, meta, source=folder)
    bits_allocated = stored.dtype.itemsize * 8
    names = _file_names(datasets)
    series_uid = _derived_uid(datasets[0].get("SeriesInstanceUID", "")) if derived else None
    with atomic_dir(folder) as temp:
        for z, (ds_source, name) in enumerate(zip(datasets, names)):
            ds = copy.deepcopy(ds_source)
            plane = np.ascontiguousarray(stored[:, :, z].T)
            bits_stored = int(ds.get("BitsStored", bits_allocated))
            if bits_stored < bits_allocated:
                signed = stored.dtype.kind == "i"
                low, high = (
                    (-(1 << (bits_stored - 1)), (1 << (bits_stored - 1)) - 1) if signed else (0, (1 << bits_stored) - 1)
                )
                if plane.size and (int(plane.min()) < low or int(plane.max()) > high):
                    ds.BitsStored, ds.HighBit = bits_allocated, bits_allocated - 1
            for keyword in ("SmallestImagePixelValue", "LargestImagePixelValue"):
                if keyword in ds:
                    delattr(ds, keyword)
            ds.PixelData = plane.astype(plane.dtype.newbyteorder("<"), copy=False).tobytes()
            ds["PixelData"].VR = "OW" if bits_allocated > 8 else "OB"
            if not hasattr(ds, "file_meta") or ds.file_meta is None:
                from pydicom.dataset import FileMetaDataset

                ds.file_meta = FileMetaDataset()
            syntax = str(ds.file_meta.get("TransferSyntaxUID", ExplicitVRLittleEndian))
            if syntax not in _UNCOMPRESSED:
                ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            if derived:
                _mark_derived(ds, ds_source, z, series_uid)
            if "SOPClassUID" in ds:
                ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
            if "SOPInstanceUID" in ds:
                ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.save_as(temp / name, enforce_file_format=True)
    return folder


def _mark_derived(ds: Any, ds_source: Any, z: int, series_uid: str | None) -> None:
    """In place: give slice ``z``'s copy ``ds`` of ``ds_source`` derived UIDs (series and SOP instance),
    ``ImageType[0] = "DERIVED"``, the ``DerivationDescription`` and a ``SourceImageSequence`` to the source slice."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence

    old_sop = str(ds.get("SOPInstanceUID", f"{ds_source.get('SeriesInstanceUID', '')}.{z}"))
    ds.SOPInstanceUID = _derived_uid(old_sop)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SeriesInstanceUID = series_uid
    image_type = list(ds.get("ImageType", []) or [])
    ds.ImageType = ["DERIVED"] + image_type[1:] if image_type else ["DERIVED", "SECONDARY"]
    ds.DerivationDescription = DERIVATION_DESCRIPTION
    if "SOPClassUID" in ds_source and "SOPInstanceUID" in ds_source:
        source_item = Dataset()
        source_item.ReferencedSOPClassUID = ds_source.SOPClassUID
        source_item.ReferencedSOPInstanceUID = ds_source.SOPInstanceUID
        ds.SourceImageSequence = DicomSequence([source_item])
