"""Synthetic but valid DICOM series (MR or CT Image Storage) written from a volume and its affine: test data and
examples for the DICOM path of :mod:`umed.io.dicom`, with the same bytes for the same call."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from umed.errors import ConfigError
from umed.io.atomic import atomic_dir
from umed.io.nifti import to_stored

__all__ = ["make_dicom_series"]

_SOP_CLASSES = {"MR": "1.2.840.10008.5.1.4.1.1.4", "CT": "1.2.840.10008.5.1.4.1.1.2"}


def _ds(value: float) -> Any:
    from pydicom.valuerep import DSfloat

    return DSfloat(float(value), auto_format=True)


def make_dicom_series(
    array: np.ndarray,
    affine: np.ndarray,
    out_dir: Path,
    *,
    patient_id: str = "UMED-SYNTHETIC",
    dtype: np.dtype | type = np.int16,
    slope: float = 1.0,
    intercept: float = 0.0,
    modality: str = "MR",
    series_description: str = "umed synthetic series",
) -> Path:
    """Write a synthetic but valid DICOM series (MR or CT Image Storage) from a volume and its affine.

    All type 1 and type 2 attributes of the Patient, Study, Series, Frame of Reference, Equipment, Image Plane,
    Image Pixel and MR/CT Image modules are set; UIDs are derived deterministically from ``patient_id`` so the same
    call writes the same bytes. Oblique orientations and anisotropic spacing are supported (the affine's first
    two columns must be orthogonal; the third may be tilted).

    Args:
        array: ``(X, Y, Z)`` volume in file units (nibabel order; axial slices along the last axis).
        affine: 4x4 voxel-to-RAS+ (mm) matrix, as nibabel gives it.
        out_dir: folder to create (replaced if it exists); one file ``IM00001.dcm``... per slice.
        patient_id: PatientID (also seeds the UIDs).
        dtype: stored integer dtype (``int16``, ``uint16``, ``uint8``, ``int8``, ``int32``, ``uint32``).
        slope: RescaleSlope: file units = stored * slope + intercept.
        intercept: RescaleIntercept.
        modality: ``"MR"`` or ``"CT"``.
        series_description: SeriesDescription.

    Returns:
        ``out_dir``.

    Raises:
        ConfigError: not a 3D array, a non-integer dtype, an unknown modality, a singular affine or non-orthogonal
            in-plane axes.
        OutputError: the folder cannot be written.

    Example:
        >>> import tempfile
        >>> tmp = tempfile.TemporaryDirectory()
        >>> volume = np.arange(60).reshape(4, 5, 3) * 10.0  # (X, Y, Z): three axial slices
        >>> folder = make_dicom_series(volume, np.diag([0.5, 0.5, 2.0, 1.0]), Path(tmp.name) / "series")
        >>> sorted(path.name for path in folder.iterdir())
        ['IM00001.dcm', 'IM00002.dcm', 'IM00003.dcm']
        >>> from umed.io.dicom import load_dicom_series
        >>> image, meta = load_dicom_series(folder)
        >>> bool((image == volume).all()), meta.spacing, meta.disk_dtype
        (True, (0.5, 0.5, 2.0), dtype('int16'))
        >>> tmp.cleanup()
    """
    from pydicom.uid import generate_uid

    array, dtype, modality = _checked(array, dtype, modality, out_dir)
    lps, spacing, row_dir, col_dir = _plane_geometry(affine, out_dir)
    normal = np.cross(row_dir, col_dir)
    stored = to_stored(array, dtype, slope, intercept, source=out_dir)
    series = _Series(
        patient_id=patient_id,
        modality=modality,
        description=series_description,
        study_uid=generate_uid(entropy_srcs=[patient_id, "study"]),
        series_uid=generate_uid(entropy_srcs=[patient_id, "series", series_description]),
        frame_uid=generate_uid(entropy_srcs=[patient_id, "frame"]),
        lps=lps,
        spacing=spacing,
        row_dir=row_dir,
        col_dir=col_dir,
        normal=normal,
        slice_gap=float(abs(np.dot(lps[:3, 2], normal))),
        dtype=dtype,
        slope=slope,
        intercept=intercept,
    )
    with atomic_dir(Path(out_dir)) as temp:
        for z in range(array.shape[2]):
            ds = _synthetic_slice(series, z, stored[:, :, z])
            ds.save_as(temp / f"IM{z + 1:05d}.dcm", enforce_file_format=True)
    return Path(out_dir)


def _checked(array: Any, dtype: Any, modality: str, out_dir: Path) -> tuple[np.ndarray, np.dtype, str]:
    """``(volume, integer dtype, "MR" or "CT")`` for :func:`make_dicom_series`.

    Raises:
        ConfigError: not a 3D array, a dtype that is not an 8, 16 or 32-bit integer, an unknown modality.
    """
    array = np.asarray(array)
    if array.ndim != 3:
        raise ConfigError(
            f"{out_dir}: make_dicom_series needs a volume (expected 3 dimensions, got shape {array.shape})"
        )
    dtype = np.dtype(dtype)
    if dtype.kind not in "iu" or dtype.itemsize not in (1, 2, 4):
        raise ConfigError(f"{out_dir}: DICOM pixel dtype must be an 8, 16 or 32-bit integer (got {dtype})")
    modality = modality.upper()
    if modality not in _SOP_CLASSES:
        raise ConfigError(f"{out_dir}: unsupported modality (expected MR or CT, got {modality})")
    return array, dtype, modality


def _plane_geometry(affine: np.ndarray, out_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(lps, spacing, row_dir, col_dir)`` of a voxel-to-RAS+ affine: the voxel-to-LPS matrix, the voxel sizes (mm)
    and the unit in-plane directions.

    Raises:
        ConfigError: a singular or malformed affine, or in-plane axes that are not orthogonal.
    """
    affine = np.asarray(affine, dtype=np.float64)
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
    spacing = np.sqrt((lps[:3, :3] ** 2).sum(axis=0))
    if affine.shape != (4, 4) or np.any(spacing < 1e-9) or abs(np.linalg.det(lps[:3, :3])) < 1e-12:
        raise ConfigError(
            f"{out_dir}: singular or malformed affine (expected a 4x4 invertible matrix, got {affine.shape})"
        )
    row_dir, col_dir = lps[:3, 0] / spacing[0], lps[:3, 1] / spacing[1]
    if abs(float(np.dot(row_dir, col_dir))) > 1e-6:
        raise ConfigError(
            f"{out_dir}: in-plane axes are not orthogonal (expected a dot product of 0, got "
            f"{float(np.dot(row_dir, col_dir)):.3g})"
        )
    return lps, spacing, row_dir, col_dir


@dataclass(frozen=True)
class _Series:
    """What every slice of a synthetic series shares (identity, UIDs, geometry in LPS mm, storage)."""

    patient_id: str
    modality: str
    description: str
    study_uid: str
    series_uid: str
    frame_uid: str
    lps: np.ndarray
    spacing: np.ndarray
    row_dir: np.ndarray
    col_dir: np.ndarray
    normal: np.ndarray
    slice_gap: float
    dtype: np.dtype
    slope: float
    intercept: float


def _synthetic_slice(series: _Series, z: int, plane_xy: np.ndarray) -> Any:
    """The pydicom Dataset of slice ``z`` (stored values ``(X, Y)``) of a synthetic series."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian, generate_uid

    modality, bits = series.modality, series.dtype.itemsize * 8
    sop_uid = generate_uid(entropy_srcs=[series.patient_id, "instance", series.description, str(z)])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(_SOP_CLASSES[modality])
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = _SOP_CLASSES[modality]
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate, ds.SeriesDate, ds.ContentDate = "20000101", "20000101", "20000101"
    ds.StudyTime, ds.SeriesTime, ds.ContentTime = "120000", "120000", "120000"
    ds.AccessionNumber = ""
    ds.Modality = modality
    ds.Manufacturer = "umed (synthetic)"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "umed synthetic study"
    ds.SeriesDescription = series.description
    ds.PatientName = f"Synthetic^{series.patient_id}"
    ds.PatientID = series.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.StudyInstanceUID = series.study_uid
    ds.SeriesInstanceUID = series.series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = z + 1
    ds.FrameOfReferenceUID = series.frame_uid
    ds.PositionReferenceIndicator = ""
    position = series.lps[:3, 3] + z * series.lps[:3, 2]
    ds.ImagePositionPatient = [_ds(v) for v in position]
    ds.ImageOrientationPatient = [_ds(v) for v in np.concatenate([series.row_dir, series.col_dir])]
    ds.PixelSpacing = [_ds(series.spacing[1]), _ds(series.spacing[0])]  # row spacing (between rows), column spacing
    ds.SliceThickness = _ds(series.slice_gap)
    ds.SpacingBetweenSlices = _ds(series.slice_gap)
    ds.SliceLocation = _ds(float(np.dot(position, series.normal)))
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(plane_xy.shape[1]), int(plane_xy.shape[0])
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
    ds.PixelRepresentation = 1 if series.dtype.kind == "i" else 0
    ds.RescaleIntercept = _ds(series.intercept)
    ds.RescaleSlope = _ds(series.slope)
    ds.RescaleType = "HU" if modality == "CT" else "US"
    if modality == "MR":
        ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "SE", "NONE", ""
        ds.MRAcquisitionType = "2D"
        ds.EchoTime, ds.RepetitionTime, ds.EchoTrainLength = _ds(10.0), _ds(500.0), 1
        ds.MagneticFieldStrength = _ds(3.0)
    else:
        ds.KVP, ds.AcquisitionNumber = _ds(120.0), 1
    plane = np.ascontiguousarray(plane_xy.T)
    ds.PixelData = plane.astype(plane.dtype.newbyteorder("<"), copy=False).tobytes()
    ds["PixelData"].VR = "OW" if bits > 8 else "OB"
    return ds
