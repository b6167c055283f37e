"""Grey 2D images in PNG (pillow) and TIFF (tifffile): microscopy, EM, dermoscopy-in-grey, slices exported by hand.

The array is ``(H, W)`` (rows, columns), the stored dtype, no scaling. Pixel size is not read from the file (PNG and
TIFF resolution tags are in dots per inch or per centimetre and rarely describe the specimen), so the spacing is
``(1.0, 1.0)`` "pixels" and the affine is the identity. Written back with the same dtype (and palette for
palette PNGs), pixel for pixel; the container bytes may differ (compression level, chunks).
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any, cast

import numpy as np

from umed.case import CaseMeta, ImageFormat
from umed.errors import InputError
from umed.io.atomic import atomic_file
from umed.io.nifti import to_stored
from umed.io.shape import case_array

__all__ = [
    "load_natural",
    "save_natural",
    "natural_to_stored",
    "is_natural_path",
    "natural_case_id",
    "NATURAL_SUFFIXES",
]

NATURAL_SUFFIXES = (".png", ".tif", ".tiff")
_PNG_MODES = {"L": np.uint8, "P": np.uint8, "1": np.uint8, "I;16": np.uint16, "I;16B": np.uint16, "I;16L": np.uint16}
_TIFF_KINDS = "iuf"


def is_natural_path(path: Path) -> bool:
    """True for ``*.png``, ``*.tif``, ``*.tiff`` (case-insensitive)."""
    return Path(path).suffix.lower() in NATURAL_SUFFIXES


def natural_case_id(path: Path) -> str:
    """The file name without its suffix."""
    return Path(path).stem


def _meta(path: Path, fmt: ImageFormat, shape: tuple[int, ...], dtype: np.dtype, header: dict[str, Any]) -> CaseMeta:
    return CaseMeta(
        case_id=natural_case_id(path),
        source=path,
        format=fmt,
        shape=shape,
        affine=np.eye(4),
        spacing=(1.0, 1.0),
        disk_dtype=np.dtype(dtype),
        header=header,
    )


def _load_png(path: Path) -> tuple[np.ndarray, CaseMeta]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            info = {key: image.info[key] for key in ("dpi",) if key in image.info}
            palette = image.getpalette() if mode == "P" else None
            if mode == "I":  # 16-bit PNG read by an older pillow
                array = np.asarray(image, dtype=np.int32)
            elif mode in _PNG_MODES:
                array = np.asarray(image)
            else:
                raise InputError(
                    f"{path}: umed reads grey images (expected mode L, I;16, P or 1, got {mode}); "
                    "convert it to greyscale first"
                )
    except InputError:
        raise
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError, zlib.error, EOFError) as error:
        raise InputError(f"{path}: unreadable or truncated PNG ({type(error).__name__}: {error})") from error
    if mode == "I":
        if array.size and (array.min() < 0 or array.max() > 65535):
            raise InputError(
                f"{path}: PNG values outside 16 bits (expected 0..65535, got {array.min()}..{array.max()})"
            )
        dtype: np.dtype = np.dtype(np.uint16)
    else:
        dtype = np.dtype(_PNG_MODES[mode])
    array = np.array(array, dtype=dtype)  # own, writable, native byte order
    header = {"mode": mode, "palette": palette, **info}
    return array, _meta(path, "png", tuple(array.shape), dtype, header)


def _load_tiff(path: Path) -> tuple[np.ndarray, CaseMeta]:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            pages = len(tif.pages)
            if pages == 0:
                raise InputError(f"{path}: unreadable or truncated TIFF (expected 1 image page, got 0)")
            if pages != 1:
                raise InputError(
                    f"{path}: umed reads single-image TIFF files (expected 1 page, got {pages}); save a stack as NIfTI"
                )
            page = cast(tifffile.TiffPage, tif.pages[0])  # the first page is never a TiffFrame
            array = page.asarray()
            header = {
                "photometric": int(page.photometric),
                "compression": int(page.compression),
                "planarconfig": int(page.planarconfig),
            }
    except InputError:
        raise
    except (OSError, ValueError, EOFError, zlib.error, tifffile.TiffFileError, IndexError, KeyError) as error:
        raise InputError(f"{path}: unreadable or truncated TIFF ({type(error).__name__}: {error})") from error
    if array.ndim != 2:
        raise InputError(f"{path}: umed reads grey 2D images (expected shape (H, W), got {array.shape})")
    if array.dtype.kind not in _TIFF_KINDS:
        raise InputError(f"{path}: unsupported TIFF dtype (expected integers or floats, got {array.dtype})")
    dtype = array.dtype.newbyteorder("=")
    array = np.array(array, dtype=dtype)
    return array, _meta(path, "tiff", tuple(array.shape), dtype, header)


def load_natural(path: Path) -> tuple[np.ndarray, CaseMeta]:
    """Read a grey PNG or single-page TIFF.

    Args:
        path: ``*.png``, ``*.tif`` or ``*.tiff``.

    Returns:
        ``(array, meta)``: ``array`` is ``(H, W)``, the stored dtype (PNG: uint8, or uint16 for 16-bit; palette PNGs
        give their indices; TIFF: any integer or float dtype), pixel values as stored. ``meta.header`` is a dict
        (``mode``, ``palette``, ``dpi`` for PNG; ``photometric``, ``compression`` for TIFF).

    Raises:
        InputError: unreadable or truncated file, colour image, multi-page TIFF, unsupported dtype.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".png":
        return _load_png(path)
    if suffix in (".tif", ".tiff"):
        return _load_tiff(path)
    raise InputError(f"{path}: not a PNG or TIFF file (expected .png, .tif or .tiff, got {suffix or 'no suffix'})")


def natural_to_stored(array: np.ndarray, meta: CaseMeta, *, source: Path | str | None = None) -> np.ndarray:
    """Round and clip file values to what the PNG/TIFF stores (``(H, W)``, ``meta.disk_dtype``; 0/1 for 1-bit PNG)."""
    value_range = (0, 1) if isinstance(meta.header, dict) and meta.header.get("mode") == "1" else None
    return to_stored(array, meta.disk_dtype, 1.0, 0.0, value_range=value_range, source=source or meta.source)


def save_natural(array: np.ndarray, meta: CaseMeta, path: Path) -> Path:
    """Write a grey PNG or TIFF with ``meta``'s dtype (and palette), atomically.

    Args:
        array: ``meta.shape`` = ``(H, W)``, pixel values (rounded and clipped to ``meta.disk_dtype``).
        meta: the :class:`CaseMeta` of :func:`load_natural`.
        path: target file; its suffix must match ``meta.format``.

    Returns:
        ``path``.

    Raises:
        GeometryError: ``array``'s shape is not ``meta.shape``.
        InputError: the suffix does not match the format, NaN/Inf values.
        OutputError: the file cannot be written.
    """
    path = Path(path)
    array = case_array(array, meta, path)
    suffix = path.suffix.lower()
    wanted = (".png",) if meta.format == "png" else (".tif", ".tiff")
    if suffix not in wanted:
        raise InputError(
            f"{path}: file name does not match the format {meta.format} (expected {'/'.join(wanted)}, got "
            f"{suffix or 'no suffix'})"
        )
    stored = natural_to_stored(array, meta, source=path)
    header = meta.header if isinstance(meta.header, dict) else {}
    with atomic_file(path) as temp:
        if meta.format == "png":
            from PIL import Image

            mode = header.get("mode", "L")
            if mode == "1":
                image = Image.fromarray(stored.astype(bool))
            elif stored.dtype == np.uint16:
                image = Image.fromarray(stored)
            else:
                image = Image.fromarray(stored.astype(np.uint8))
                if mode == "P" and header.get("palette"):
                    image.putpalette(header["palette"])
            options: dict[str, Any] = {}
            if "dpi" in header:
                options["dpi"] = header["dpi"]
            image.save(temp, format="PNG", **options)
        else:
            import tifffile

            compression = "zlib" if header.get("compression") in (8, 32946) else None
            tifffile.imwrite(temp, stored, photometric="minisblack", compression=compression, metadata=None)
    return path
