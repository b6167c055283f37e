"""NIfTI-1 / NIfTI-2 single files (``.nii``, ``.nii.gz``) read and written without losing a bit.

nibabel's image classes reset ``scl_slope``/``scl_inter`` and ``vox_offset`` when they load a file and recompute the
scaling when they save floats, so a load/save cycle through them can change the header and the stored integers.
This module reads the header bytes itself (as a nibabel header built with ``check=False``, so nothing is "fixed"),
reads the stored voxels unscaled, and writes back ``header.binaryblock`` verbatim, then the extensions, then the
stored voxels in the original on-disk dtype and byte order. Saving an unmodified array reproduces the file's
content byte for byte (the gzip container may differ: umed writes level 1, ``mtime=0``, no file name).

It also holds the stored-value arithmetic (``stored * slope + intercept``) that every format shares.
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from umed.case import CaseMeta
from umed.errors import InputError
from umed.io.atomic import atomic_file
from umed.io.inflate import INFLATE_ERRORS, GzipReader
from umed.io.shape import case_array

if TYPE_CHECKING:
    from nibabel.nifti1 import Nifti1Header  # Nifti2Header is a subclass

__all__ = ["load_nifti", "save_nifti", "is_nifti_path", "nifti_case_id", "to_stored", "from_stored"]

_NIFTI_SUFFIXES = (".nii.gz", ".nii")
_SUPPORTED_KINDS = "iuf"  # signed, unsigned integers and floats (no complex, no RGB records)
_GZIP_LEVEL = 1  # nibabel's default; output bytes are reproducible (mtime=0)


def is_nifti_path(path: Path) -> bool:
    """True for ``*.nii`` and ``*.nii.gz`` (case-insensitive)."""
    return Path(path).name.lower().endswith(_NIFTI_SUFFIXES)


def nifti_case_id(path: Path) -> str:
    """The file name without ``.nii`` / ``.nii.gz``."""
    name = Path(path).name
    for suffix in _NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


# ------------------------------------------------------------------------------------------ stored-value arithmetic


def _is_scaled(slope: np.ndarray | float, intercept: np.ndarray | float) -> bool:
    return bool(np.any(np.asarray(slope) != 1.0) or np.any(np.asarray(intercept) != 0.0))


def from_stored(
    stored: np.ndarray, disk_dtype: np.dtype, slope: np.ndarray | float, intercept: np.ndarray | float
) -> np.ndarray:
    """Stored voxels to file units.

    Args:
        stored: any shape, ``disk_dtype``.
        disk_dtype: the on-disk dtype.
        slope: multiplier, a float or an array broadcastable to ``stored`` (per-slice DICOM scaling: shape ``(Z,)``
            against ``(X, Y, Z)``).
        intercept: offset, same form as ``slope``.

    Returns:
        ``stored * slope + intercept`` as float64 when any slope != 1 or intercept != 0, else ``stored`` as the
        native-byte-order ``disk_dtype``.
    """
    if _is_scaled(slope, intercept):
        return stored.astype(np.float64) * np.asarray(slope, dtype=np.float64) + np.asarray(intercept, dtype=np.float64)
    return stored.astype(np.dtype(disk_dtype).newbyteorder("="), copy=False)


def to_stored(
    array: np.ndarray,
    disk_dtype: np.dtype,
    slope: np.ndarray | float,
    intercept: np.ndarray | float,
    *,
    value_range: tuple[float, float] | None = None,
    source: Path | str = "array",
    copy: bool = True,
) -> np.ndarray:
    """File units to the values stored on disk: ``round((x - intercept) / slope)`` clipped to the dtype's range.

    Float dtypes are only cast (``(x - intercept) / slope`` when scaled), so they keep the dtype's precision.

    Args:
        array: any shape, file units.
        disk_dtype: the on-disk dtype.
        slope: multiplier (float or broadcastable array).
        intercept: offset (float or broadcastable array).
        value_range: narrower ``(min, max)`` of storable integers (e.g. DICOM ``BitsStored``); the dtype's range when
            ``None``.
        source: file named in error messages.
        copy: False lets an unscaled array already in ``disk_dtype`` (and its range) come back as it is, not copied:
            for a caller that only reads the result (a writer).

    Returns:
        Array of ``array``'s shape, native-byte-order ``disk_dtype``.

    Raises:
        InputError: NaN or Inf values cannot be stored in an integer dtype.
    """
    dtype = np.dtype(disk_dtype).newbyteorder("=")
    values = np.asarray(array)
    scaled = _is_scaled(slope, intercept)
    if dtype.kind == "f":
        if scaled:
            values = (values.astype(np.float64) - np.asarray(intercept, np.float64)) / np.asarray(slope, np.float64)
        return values.astype(dtype, copy=copy)
    info = np.iinfo(dtype)
    low, high = (info.min, info.max) if value_range is None else value_range
    if values.dtype.kind in "iub" and not scaled:
        if values.dtype == dtype and (low, high) == (info.min, info.max):
            return values.copy(order="K") if copy else values  # already stored values: a clip would change nothing
        return np.clip(values, low, high).astype(dtype)
    values = values.astype(np.float64)
    if scaled:
        values = (values - np.asarray(intercept, np.float64)) / np.asarray(slope, np.float64)
    if not np.isfinite(values).all():
        raise InputError(
            f"{source}: NaN or Inf values cannot be stored (expected finite values, got non-finite for {dtype})"
        )
    return np.clip(np.rint(values), low, high).astype(dtype)


# ---------------------------------------------------------------------------------------------------------- reading


def _open_read(path: Path) -> BinaryIO:
    if path.name.lower().endswith(".gz"):
        # a binary file object (read, readinto), but not a declared BinaryIO
        return GzipReader(path)  # type: ignore[return-value]
    return open(path, "rb")  # noqa: SIM115


def _read_exact(handle: BinaryIO, size: int) -> np.ndarray:
    """Read ``size`` bytes (fewer only at the end of the file) into a uint8 array (not zero-filled first)."""
    buffer = np.empty(size, dtype=np.uint8)
    view = buffer.data
    filled = 0
    while filled < size:
        # every binary file umed opens (BufferedReader, GzipFile) has readinto; typing.BinaryIO does not declare it
        count = handle.readinto(view[filled:])  # type: ignore[attr-defined]
        if not count:
            break
        filled += count
    return buffer if filled == size else buffer[:filled]


def _header_class(first: bytes, path: Path) -> type[Nifti1Header]:
    import nibabel as nib

    if len(first) < 4:  # an empty (zero-byte) or nearly empty file
        raise InputError(f"{path}: not a NIfTI file (expected a 348- or 540-byte header, got {len(first)} bytes)")
    sizes = {int(np.frombuffer(first, "<i4")[0]), int(np.frombuffer(first, ">i4")[0])}
    if 348 in sizes:
        return nib.Nifti1Header
    if 540 in sizes:
        return nib.Nifti2Header
    got = int(np.frombuffer(first, "<i4")[0]) if len(first) == 4 else f"{len(first)} bytes"
    raise InputError(f"{path}: not a NIfTI file (expected sizeof_hdr 348 or 540, got {got})")


def _extension_size(header) -> int:
    return int(header.extensions.get_sizeondisk()) if len(header.extensions) else 0


def _data_offset(header) -> int:
    """Where the voxels start: ``vox_offset``, or right after header and extensions when it is unset."""
    minimum = header.sizeof_hdr + 4 + _extension_size(header)
    return max(int(header["vox_offset"]), minimum)


def _header_prefix(header) -> bytes:
    """The bytes from the start of the file to the voxels: header, extension flag and extensions, padding."""
    buffer = io.BytesIO()
    buffer.write(header.binaryblock)
    if len(header.extensions):
        buffer.write(b"\x01\x00\x00\x00")
        from nibabel.volumeutils import native_code

        header.extensions.write_to(buffer, header.endianness != native_code)
    else:
        buffer.write(b"\x00\x00\x00\x00")
    prefix = buffer.getvalue()
    return prefix + b"\x00" * (_data_offset(header) - len(prefix))


def _spatial_shape(header, path: Path) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(stored_shape, spatial_shape)``: trailing singleton dimensions beyond the third are squeezed."""
    dim = [int(d) for d in header["dim"]]
    ndim = dim[0]
    if not 1 <= ndim <= 7:
        raise InputError(f"{path}: invalid NIfTI dim[0] (expected 1..7, got {ndim})")
    stored = tuple(dim[1 : 1 + ndim])
    if any(size < 1 for size in stored):
        raise InputError(f"{path}: invalid NIfTI dimensions (expected sizes >= 1, got {stored})")
    extra = stored[3:]
    if any(size > 1 for size in extra):
        raise InputError(
            f"{path}: umed protects one channel (or time point) per file; split the channels into separate files "
            f"as nnU-Net's _0000/_0001 files do (expected a 3D volume, got shape {stored})"
        )
    spatial = stored[:3]
    if len(spatial) == 1:
        raise InputError(f"{path}: 1D NIfTI images are not supported (expected 2 or 3 dimensions, got shape {stored})")
    return stored, spatial


def _best_affine(header) -> np.ndarray:
    """nibabel's affine (sform, else qform, else pixdim), reading an invalid qfac ``pixdim[0]`` as 1 as nibabel does."""
    import nibabel as nib

    try:
        return header.get_best_affine()
    except nib.spatialimages.HeaderDataError:
        fixed = header.copy()
        pixdim = fixed["pixdim"].copy()
        if pixdim[0] not in (-1, 1):
            pixdim[0] = 1
        fixed["pixdim"] = pixdim
        return fixed.get_best_affine()


def _read_header(handle: BinaryIO, path: Path) -> tuple[Any, int]:
    """``(header with its extensions, bytes read)`` from the start of an open single-file NIfTI.

    Raises:
        InputError: a truncated header, a header/image pair, extensions without room for them.
    """
    import nibabel as nib

    first = handle.read(4)
    klass = _header_class(first, path)
    raw = first + handle.read(klass.template_dtype.itemsize - 4)
    if len(raw) < klass.template_dtype.itemsize:
        raise InputError(
            f"{path}: truncated NIfTI header (expected {klass.template_dtype.itemsize} bytes, got {len(raw)})"
        )
    header = klass(raw, check=False)
    magic = bytes(header["magic"]).rstrip(b"\x00")[:3]
    if magic not in (b"n+1", b"n+2"):
        raise InputError(
            f"{path}: not a single-file NIfTI (expected magic n+1 or n+2, got {magic!r}); "
            "convert .hdr/.img pairs to .nii.gz"
        )
    flag = handle.read(4)
    consumed = len(raw) + len(flag)
    if len(flag) == 4 and flag[0:1] != b"\x00":
        size = int(header["vox_offset"]) - consumed
        if size <= 0:
            raise InputError(
                f"{path}: NIfTI extensions but no room for them (expected vox_offset > {consumed}, "
                f"got {int(header['vox_offset'])})"
            )
        byteswap = header.endianness != nib.volumeutils.native_code
        extensions = klass.exts_klass.from_fileobj(handle, size, byteswap)
        consumed += extensions.get_sizeondisk()
        header = klass(raw, check=False, extensions=extensions)
    return header, consumed


def load_nifti(path: Path) -> tuple[np.ndarray, CaseMeta]:
    """Read a single-file NIfTI image in file units.

    Args:
        path: a ``.nii`` or ``.nii.gz`` file (NIfTI-1 or NIfTI-2, either byte order).

    Returns:
        ``(array, meta)``. ``array`` has shape ``(X, Y, Z)`` (or ``(X, Y)`` for a 2D file; a 4D file with a
        singleton 4th dimension is squeezed to 3D), nibabel's axis order, Fortran memory order; float64 when the
        header's ``scl_slope``/``scl_inter`` apply, else the on-disk dtype in native byte order. ``meta.header`` is
        the file's header exactly as stored (a nibabel ``Nifti1Header``/``Nifti2Header`` with its extensions).

    Raises:
        InputError: unreadable, truncated or corrupt file, a header/image pair, an unsupported dtype, more than one
            channel or time point, or an invalid scaling.
    """
    import nibabel as nib

    path = Path(path)
    case_id = nifti_case_id(path)
    read_errors: tuple[type[BaseException], ...] = (
        OSError,
        EOFError,
        ValueError,
        nib.spatialimages.HeaderDataError,
        *INFLATE_ERRORS,
    )
    try:
        with _open_read(path) as handle:
            header, consumed = _read_header(handle, path)
            offset = _data_offset(header)
            if offset > consumed:
                handle.read(offset - consumed)
            stored_shape, spatial = _spatial_shape(header, path)
            dtype = header.get_data_dtype()
            if dtype.kind not in _SUPPORTED_KINDS or dtype.fields is not None:
                raise InputError(f"{path}: unsupported NIfTI datatype (expected integers or floats, got {dtype})")
            nbytes = int(np.prod(stored_shape)) * dtype.itemsize
            data = _read_exact(handle, nbytes)
            if len(data) < nbytes:
                raise InputError(f"{path}: truncated file (expected {nbytes} bytes of voxel data, got {len(data)})")
        slope, intercept = header.get_slope_inter()
        affine = _best_affine(header)
    except InputError:
        raise
    except read_errors as error:
        raise InputError(f"{path}: unreadable NIfTI file ({type(error).__name__}: {error})") from error
    slope = 1.0 if slope is None else float(slope)
    intercept = 0.0 if intercept is None else float(intercept)
    stored = np.frombuffer(data, dtype=dtype).reshape(spatial, order="F")
    disk_dtype = dtype.newbyteorder("=")
    array = from_stored(stored, disk_dtype, slope, intercept)
    affine = np.asarray(affine, dtype=np.float64)
    spacing = tuple(float(v) for v in np.sqrt((affine[:3, : len(spatial)] ** 2).sum(axis=0)))
    source, shape = path, tuple(spatial)  # every CaseMeta field by its name, in the dataclass's order
    return array, CaseMeta(case_id, source, "nifti", shape, affine, spacing, disk_dtype, slope, intercept, header)


# ---------------------------------------------------------------------------------------------------------- writing


def save_nifti(array: np.ndarray, meta: CaseMeta, path: Path) -> Path:
    """Write ``array`` (file units) with ``meta``'s header, on-disk dtype and scaling, atomically.

    The header bytes (``meta.header.binaryblock``) and extensions are written verbatim; the voxels are rounded and
    clipped to the on-disk dtype (:func:`to_stored`) and written in the header's byte order. A ``.nii.gz`` target is
    gzip-compressed (level 1, ``mtime=0``, so the same input gives the same bytes), a ``.nii`` one is not.

    Args:
        array: ``meta.shape``, file units, any real dtype.
        meta: the :class:`CaseMeta` :func:`load_nifti` returned (its header must be a NIfTI header).
        path: target ``.nii`` or ``.nii.gz`` file.

    Returns:
        ``path``.

    Raises:
        GeometryError: ``array``'s shape is not ``meta.shape``.
        InputError: ``meta`` has no NIfTI header, or NaN/Inf values for an integer dtype.
        OutputError: the file cannot be written.
    """
    import nibabel as nib

    path = Path(path)
    array = case_array(array, meta, path)
    header = meta.header
    if not isinstance(header, (nib.Nifti1Header, nib.Nifti2Header)):
        raise InputError(
            f"{path}: cannot write NIfTI without the source header (expected a NIfTI header, "
            f"got {type(header).__name__})"
        )
    if not is_nifti_path(path):
        raise InputError(
            f"{path}: NIfTI output needs a .nii or .nii.gz name (expected .nii/.nii.gz, "
            f"got {path.suffix or 'no suffix'})"
        )
    stored = to_stored(array, meta.disk_dtype, meta.slope, meta.intercept, source=path, copy=False)  # only read
    on_disk = stored.dtype.newbyteorder(header.endianness)
    prefix = _header_prefix(header)
    with atomic_file(path) as temp:
        with open(temp, "wb") as raw:
            if path.name.lower().endswith(".gz"):
                # GzipFile is a binary file object, but typeshed does not declare it a BinaryIO
                handle: BinaryIO = gzip.GzipFile(  # type: ignore[assignment]
                    filename="", mode="wb", fileobj=raw, compresslevel=_GZIP_LEVEL, mtime=0
                )
            else:
                handle = raw
            try:
                handle.write(prefix)
                if stored.ndim == 3:
                    for z in range(stored.shape[2]):
                        handle.write(stored[:, :, z].astype(on_disk, copy=False).tobytes(order="F"))
                else:
                    handle.write(stored.astype(on_disk, copy=False).tobytes(order="F"))
            finally:
                if handle is not raw:
                    handle.close()
    return path
