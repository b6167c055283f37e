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
from umed.errors import ConfigError, GeometryError, InputError
from umed.io.atomic import atomic_dir
from umed.io.nifti import from_stored, to_stored

__all__ = ["load_dicom_series", "save_dicom_series", "make_dicom_series", "is_dicom_dir", "dicom_slice_scaling"]

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_DICOM_SUFFIXES = {"", ".dcm", ".dicom", ".ima"}
_SKIPPED_NAMES = {"dicomdir"}
_UNCOMPRESSED = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}  # implicit and explicit VR little endian
_SOP_CLASSES = {"MR": "1.2.840.10008.5.1.4.1.1.4", "CT": "1.2.840.10008.5.1.4.1.1.2"}
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
    import pydicom
    from pydicom.errors import InvalidDicomError

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder (expected a folder holding one DICOM series)")
    slices: list[tuple[Any, np.ndarray, Path]] = []
    for file in _candidate_files(folder):
        try:
            ds = pydicom.dcmread(file)
        except InvalidDicomError as error:
            if file.suffix.lower() in _DICOM_SUFFIXES:
                raise InputError(f"{file}: not a readable DICOM file ({error})") from error
            continue  # a note or a JSON file beside the series
        except (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise InputError(f"{file}: unreadable DICOM file ({type(error).__name__}: {error})") from error
        if "PixelData" not in ds:
            if file.suffix.lower() in (".dcm", ".dicom", ".ima"):
                raise InputError(f"{file}: DICOM file without pixel data (expected an image slice, got no PixelData)")
            continue
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        if frames != 1:
            raise InputError(f"{file}: multi-frame DICOM is not supported (expected 1 frame per file, got {frames})")
        samples = int(ds.get("SamplesPerPixel", 1))
        if samples != 1:
            raise InputError(f"{file}: umed reads grey images (expected SamplesPerPixel 1, got {samples})")
        try:
            pixels = ds.pixel_array
        except (
            OSError,
            EOFError,
            ValueError,
            KeyError,
            TypeError,
            AttributeError,
            NotImplementedError,
            RuntimeError,
        ) as error:
            raise InputError(f"{file}: unreadable or truncated pixel data ({type(error).__name__}: {error})") from error
        expected = _pixel_dtype(ds, file)
        if pixels.ndim != 2:
            raise InputError(f"{file}: expected one 2D slice (expected 2 dimensions, got shape {pixels.shape})")
        del ds.PixelData
        slices.append((ds, pixels.astype(expected, copy=False), file))
    if not slices:
        raise InputError(f"{folder}: no DICOM image file (expected a folder holding one DICOM series, got none)")
    series = {str(ds.get("SeriesInstanceUID", "")) for ds, _, _ in slices}
    if len(series) > 1:
        raise InputError(
            f"{folder}: several DICOM series in one folder (expected 1 series, got {len(series)}); "
            "put each series in its own folder"
        )
    first_ds, first_pixels, first_file = slices[0]
    orientation = _float_list(first_ds, "ImageOrientationPatient", 6, first_file)
    row_dir, col_dir = orientation[:3], orientation[3:]
    normal = np.cross(row_dir, col_dir)
    spacing_rc = _float_list(first_ds, "PixelSpacing", 2, first_file)
    positions = []
    for ds, pixels, file in slices:
        if pixels.shape != first_pixels.shape:
            raise InputError(
                f"{file}: slice size differs within the series (expected {first_pixels.shape}, got {pixels.shape})"
            )
        if not np.allclose(_float_list(ds, "ImageOrientationPatient", 6, file), orientation, atol=1e-4):
            raise InputError(
                f"{file}: slice orientation differs within the series (expected {orientation.tolist()}, got "
                f"{_float_list(ds, 'ImageOrientationPatient', 6, file).tolist()})"
            )
        if not np.allclose(_float_list(ds, "PixelSpacing", 2, file), spacing_rc, atol=1e-4):
            raise InputError(
                f"{file}: pixel spacing differs within the series (expected {spacing_rc.tolist()}, got "
                f"{_float_list(ds, 'PixelSpacing', 2, file).tolist()})"
            )
        if pixels.dtype != first_pixels.dtype:
            raise InputError(
                f"{file}: pixel dtype differs within the series (expected {first_pixels.dtype}, got {pixels.dtype})"
            )
        positions.append(_float_list(ds, "ImagePositionPatient", 3, file))
    order = np.argsort([float(np.dot(p, normal)) for p in positions], kind="stable")
    slices = [slices[i] for i in order]
    positions_arr = np.asarray([positions[i] for i in order])
    n = len(slices)
    if n > 1:
        step = (positions_arr[-1] - positions_arr[0]) / (n - 1)
        if np.linalg.norm(step) < 1e-6:
            raise InputError(
                f"{folder}: slices share one position (expected distinct ImagePositionPatient, got {n} "
                "slices at the same place)"
            )
        predicted = positions_arr[0] + np.arange(n)[:, None] * step
        deviation = float(np.abs(positions_arr - predicted).max())
        if deviation > _POSITION_TOLERANCE_MM:
            gaps = np.linalg.norm(np.diff(positions_arr, axis=0), axis=1)
            raise InputError(
                f"{folder}: irregular slice spacing or missing slices (expected evenly spaced slices, got "
                f"gaps from {gaps.min():.4g} to {gaps.max():.4g} mm)"
            )
    else:
        thickness = float(first_ds.get("SpacingBetweenSlices", 0) or first_ds.get("SliceThickness", 0) or 1.0)
        step = normal * thickness
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


def dicom_to_stored(array: np.ndarray, meta: CaseMeta, *, source: Path | str | None = None) -> np.ndarray:
    """File units to stored pixel values ``(X, Y, Z)`` in the series' dtype (per-slice rescale, dtype range)."""
    slope, intercept = _scaling_for(meta)
    return to_stored(array, meta.disk_dtype, slope, intercept, source=source or meta.source)


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
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence
    from pydicom.uid import ExplicitVRLittleEndian

    folder = Path(folder)
    array = np.asarray(array)
    if tuple(array.shape) != tuple(meta.shape):
        raise GeometryError(
            f"{folder}: array shape differs from the case's (expected {tuple(meta.shape)}, got {array.shape})"
        )
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
            if "SOPClassUID" in ds:
                ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
            if "SOPInstanceUID" in ds:
                ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.save_as(temp / name, enforce_file_format=True)
    return folder


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
        >>> image, meta = load_dicom_series(folder)
        >>> bool((image == volume).all()), meta.spacing, meta.disk_dtype
        (True, (0.5, 0.5, 2.0), dtype('int16'))
        >>> tmp.cleanup()
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian, generate_uid

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
    normal = np.cross(row_dir, col_dir)
    stored = to_stored(array, dtype, slope, intercept, source=out_dir)
    study_uid = generate_uid(entropy_srcs=[patient_id, "study"])
    series_uid = generate_uid(entropy_srcs=[patient_id, "series", series_description])
    frame_uid = generate_uid(entropy_srcs=[patient_id, "frame"])
    slice_gap = float(abs(np.dot(lps[:3, 2], normal)))
    bits = dtype.itemsize * 8
    with atomic_dir(Path(out_dir)) as temp:
        for z in range(array.shape[2]):
            sop_uid = generate_uid(entropy_srcs=[patient_id, "instance", series_description, str(z)])
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
            ds.SeriesDescription = series_description
            ds.PatientName = f"Synthetic^{patient_id}"
            ds.PatientID = patient_id
            ds.PatientBirthDate = ""
            ds.PatientSex = "O"
            ds.StudyInstanceUID = study_uid
            ds.SeriesInstanceUID = series_uid
            ds.StudyID = "1"
            ds.SeriesNumber = 1
            ds.InstanceNumber = z + 1
            ds.FrameOfReferenceUID = frame_uid
            ds.PositionReferenceIndicator = ""
            position = lps[:3, 3] + z * lps[:3, 2]
            ds.ImagePositionPatient = [_ds(v) for v in position]
            ds.ImageOrientationPatient = [_ds(v) for v in np.concatenate([row_dir, col_dir])]
            ds.PixelSpacing = [_ds(spacing[1]), _ds(spacing[0])]  # row spacing (between rows), column spacing
            ds.SliceThickness = _ds(slice_gap)
            ds.SpacingBetweenSlices = _ds(slice_gap)
            ds.SliceLocation = _ds(float(np.dot(position, normal)))
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.Rows, ds.Columns = int(array.shape[1]), int(array.shape[0])
            ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
            ds.PixelRepresentation = 1 if dtype.kind == "i" else 0
            ds.RescaleIntercept = _ds(intercept)
            ds.RescaleSlope = _ds(slope)
            ds.RescaleType = "HU" if modality == "CT" else "US"
            if modality == "MR":
                ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "SE", "NONE", ""
                ds.MRAcquisitionType = "2D"
                ds.EchoTime, ds.RepetitionTime, ds.EchoTrainLength = _ds(10.0), _ds(500.0), 1
                ds.MagneticFieldStrength = _ds(3.0)
            else:
                ds.KVP, ds.AcquisitionNumber = _ds(120.0), 1
            plane = np.ascontiguousarray(stored[:, :, z].T)
            ds.PixelData = plane.astype(plane.dtype.newbyteorder("<"), copy=False).tobytes()
            ds["PixelData"].VR = "OW" if bits > 8 else "OB"
            ds.save_as(temp / f"IM{z + 1:05d}.dcm", enforce_file_format=True)
    return Path(out_dir)
