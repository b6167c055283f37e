"""Compressed files a restore patch sees through: gzip (``.nii.gz``) and PNG (deflate-compressed scanlines).

For each, :func:`layout` finds what rebuilds an original from its decompressed bytes exactly: the bytes around
the compressed stream, kept verbatim (the gzip header with its file name and time; PNG's chunks before and after
the image data and the sizes of its ``IDAT`` chunks) and the zlib settings (level, memory level, strategy) that
re-compress those bytes to exactly the original stream, tried in turn. ``None`` when no setting does: the patch
then keeps the whole original file.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

__all__ = ["CONTAINERS", "decode", "encode", "layout", "which"]

CONTAINERS = ("gzip", "png")
_PNG = b"\x89PNG\r\n\x1a\n"
_CHUNK = 1 << 20
_ZLIB_TRIES = [
    (level, memory, strategy)
    for strategy in (zlib.Z_DEFAULT_STRATEGY, zlib.Z_FILTERED)  # libpng compresses filtered rows with Z_FILTERED
    for memory in (8, 9)
    for level in ((9, 6, 1, 2, 3, 4, 5, 7, 8, 0) if memory == 8 and strategy == zlib.Z_DEFAULT_STRATEGY else (9, 6, 1))
]
"""zlib settings tried in turn: gzip's, zlib's and nibabel's defaults first (BraTS 2015's files: level 1)."""


def which(data: bytes) -> str | None:
    """``"gzip"``, ``"png"`` or ``None`` from the file's first bytes."""
    if data[:2] == b"\x1f\x8b":
        return "gzip"
    return "png" if data[:8] == _PNG else None


def layout(kind: str, original: bytes) -> tuple[dict[str, Any], bytes] | None:
    """What rebuilds ``original`` (a ``kind`` file) from its decompressed bytes, and those bytes; ``None`` if the
    file is not one this module can rebuild exactly (several gzip members, trailing bytes, another compressor)."""
    try:
        found = _gzip_parts(original) if kind == "gzip" else _png_parts(original)
    except (ValueError, IndexError, struct.error, zlib.error):
        return None
    if found is None:
        return None
    parts, wbits, stream, raw = found
    for level, mem_level, strategy in _ZLIB_TRIES:
        if _reproduces(raw, stream, wbits, level, mem_level, strategy):
            return {**parts, "wbits": wbits, "level": level, "mem_level": mem_level, "strategy": strategy}, raw
    return None


def decode(kind: str, data: bytes) -> bytes:
    """The decompressed bytes of a ``kind`` file (raises ``ValueError`` or ``zlib.error`` if it is not one)."""
    if kind == "gzip":
        import gzip

        return gzip.decompress(data)
    _, _, stream = _png_stream(data)
    return zlib.decompress(stream)


def encode(kind: str, raw: bytes, settings: dict[str, Any]) -> bytes:
    """The file :func:`layout` described, from its decompressed bytes."""
    deflater = zlib.compressobj(
        int(settings["level"]),
        zlib.DEFLATED,
        -int(settings["wbits"]),
        int(settings["mem_level"]),
        int(settings["strategy"]),
    )
    body = deflater.compress(raw) + deflater.flush()
    if kind == "gzip":
        return bytes.fromhex(settings["header"]) + body + struct.pack("<II", zlib.crc32(raw), len(raw) & 0xFFFFFFFF)
    stream = bytes.fromhex(settings["zlib"]) + body + struct.pack(">I", zlib.adler32(raw))
    chunks, position = [], 0
    for size in settings["idat"]:
        data = stream[position : position + size]
        chunks.append(struct.pack(">I", len(data)) + b"IDAT" + data + struct.pack(">I", zlib.crc32(b"IDAT" + data)))
        position += size
    if position != len(stream):
        raise ValueError("the re-compressed image data does not fill the recorded IDAT chunks")
    return bytes.fromhex(settings["head"]) + b"".join(chunks) + bytes.fromhex(settings["tail"])


def _gzip_parts(data: bytes) -> tuple[dict[str, Any], int, bytes, bytes] | None:
    """A single-member gzip file (RFC 1952): its header, its deflate stream and the decompressed bytes."""
    if len(data) < 18 or data[2] != 8:
        return None
    flags, start = data[3], 10
    if flags & 4:
        start += 2 + struct.unpack("<H", data[start : start + 2])[0]
    for bit in (8, 16):  # file name, comment: zero-terminated
        if flags & bit:
            start = data.index(b"\0", start) + 1
    start += 2 if flags & 2 else 0
    inflater = zlib.decompressobj(-15)
    raw = inflater.decompress(data[start:])
    if not inflater.eof or inflater.unused_data != struct.pack("<II", zlib.crc32(raw), len(raw) & 0xFFFFFFFF):
        return None
    return {"header": data[:start].hex()}, 15, data[start : len(data) - 8], raw


def _png_stream(data: bytes) -> tuple[int, int, bytes]:
    """Where a PNG's ``IDAT`` chunks start and end, and their data joined (the zlib stream)."""
    if data[:8] != _PNG:
        raise ValueError("not a PNG file")
    position, first, last, pieces = 8, -1, -1, []
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        end = position + 12 + length
        if kind == b"IDAT":
            if first >= 0 and last != position:
                raise ValueError("IDAT chunks are not consecutive")
            first = position if first < 0 else first
            pieces.append(data[position + 8 : position + 8 + length])
            last = end
        position = end
    if first < 0 or position != len(data):
        raise ValueError("no image data, or bytes after the last chunk")
    return first, last, b"".join(pieces)


def _png_parts(data: bytes) -> tuple[dict[str, Any], int, bytes, bytes] | None:
    """A PNG's chunks around its image data, the ``IDAT`` sizes, and its deflate stream and scanlines."""
    first, last, stream = _png_stream(data)
    if len(stream) < 6 or stream[0] & 0x0F != 8 or stream[1] & 0x20:  # deflate, no preset dictionary
        return None
    wbits = (stream[0] >> 4) + 8
    inflater = zlib.decompressobj(-wbits)
    raw = inflater.decompress(stream[2:])
    if not inflater.eof or inflater.unused_data != struct.pack(">I", zlib.adler32(raw)):
        return None
    sizes, position = [], first
    while position < last:
        size = struct.unpack(">I", data[position : position + 4])[0]
        sizes.append(size)
        position += 12 + size
    parts = {"head": data[:first].hex(), "tail": data[last:].hex(), "idat": sizes, "zlib": stream[:2].hex()}
    return parts, wbits, stream[2:-4], raw


def _reproduces(raw: bytes, stream: bytes, wbits: int, level: int, mem_level: int, strategy: int) -> bool:
    """Whether these zlib settings compress ``raw`` to ``stream`` (stops at the first differing byte)."""
    try:
        deflater = zlib.compressobj(level, zlib.DEFLATED, -wbits, mem_level, strategy)
    except (ValueError, zlib.error):  # a window zlib does not write (8 bits)
        return False
    position = 0
    for offset in range(0, len(raw), _CHUNK):
        piece = deflater.compress(raw[offset : offset + _CHUNK])
        if stream[position : position + len(piece)] != piece:
            return False
        position += len(piece)
    return stream[position:] == deflater.flush()
