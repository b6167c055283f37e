"""Byte patches that turn a protected file back into its original, bit for bit (for ``umed restore``).

A patch works on one of these layers, chosen when the key is written:

- ``raw``: on the file's bytes. Where protected and original have the same length (uncompressed NIfTI, DICOM,
  TIFF: only the changed voxels differ) the patch holds the original bytes of the differing runs of 4-byte words;
  otherwise (a DICOM file whose header gained tags) the original header part whole and the runs of the rest,
  compared aligned at the end.
- ``gzip`` (``.nii.gz``) and ``png``: on the decompressed bytes (a PNG's filtered scanlines), when
  :mod:`umed.protect.containers` finds the zlib settings and the surrounding bytes that rebuild the original file
  exactly from them; restoring then re-compresses with those settings.
- ``copy``: the whole original file (a compressed file no zlib setting reproduces, a file without a protected
  counterpart, or when the patch would be larger: a PNG whose rows the original's writer filtered otherwise).

Every patch records the SHA-256 of the protected file it applies to and of the original it gives back; applying
checks both, so a changed file or a wrong key is an error, never a wrong original.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from umed.protect import containers

__all__ = ["FilePatch", "apply_patch", "make_patch"]

_WORD = 4
"""Runs are whole 4-byte words of the file (float32 voxels, pairs of int16): the stored original values keep their
alignment, which the key's LZMA compression exploits (on a BraTS volume: 3.1% of the protected file against 3.9%
for runs of single bytes)."""


@dataclass(frozen=True)
class FilePatch:
    """How to rebuild one original file from its protected counterpart.

    Attributes:
        layer: ``"raw"``, ``"gzip"``, ``"png"`` or ``"copy"`` (see the module docstring).
        original_sha256: the original file's SHA-256 (checked after rebuilding).
        protected_sha256: the protected file's SHA-256 (``None`` for ``copy`` without a counterpart).
        layout: for ``gzip`` and ``png``: what :func:`umed.protect.containers.encode` rebuilds the file with.
        starts, ends: ``(N,)`` int64 byte ranges ``[start, end)`` of the layer's protected bytes to replace.
        sizes: ``(N,)`` int64 length of each range's replacement in ``data``.
        data: the replacement bytes, run after run (``copy``: the whole original).
    """

    layer: str
    original_sha256: str
    protected_sha256: str | None
    layout: dict[str, Any] | None
    starts: np.ndarray
    ends: np.ndarray
    sizes: np.ndarray
    data: bytes

    def to_json(self) -> dict[str, Any]:
        """The patch's description (the byte arrays go in :meth:`to_blob`)."""
        return {
            "layer": self.layer,
            "original_sha256": self.original_sha256,
            "protected_sha256": self.protected_sha256,
            "layout": self.layout,
            "runs": len(self.starts),
        }

    def to_blob(self) -> bytes:
        """The ranges (start deltas, range lengths, replacement sizes: little-endian int64) then the replacements."""
        starts = np.asarray(self.starts, dtype="<i8")
        deltas = np.diff(starts, prepend=np.int64(0)).astype("<i8")
        lengths = (np.asarray(self.ends, dtype="<i8") - starts).astype("<i8")
        return deltas.tobytes() + lengths.tobytes() + np.asarray(self.sizes, dtype="<i8").tobytes() + self.data

    @classmethod
    def from_parts(cls, description: dict[str, Any], blob: bytes) -> FilePatch:
        """Read a patch back from :meth:`to_json` and :meth:`to_blob` (raises ``KeyError``/``ValueError`` if bad)."""
        runs = int(description["runs"])
        if len(blob) < 24 * runs:
            raise ValueError("truncated patch")
        deltas, lengths, sizes = np.frombuffer(blob[: 24 * runs], dtype="<i8").reshape(3, runs).astype(np.int64)
        starts = np.cumsum(deltas)
        return cls(
            str(description["layer"]),
            str(description["original_sha256"]),
            description.get("protected_sha256"),
            description.get("layout"),
            starts,
            starts + lengths,
            sizes,
            blob[24 * runs :],
        )


def make_patch(original: bytes, protected: bytes | None) -> FilePatch:
    """The patch that rebuilds ``original`` from ``protected`` (``None``: no counterpart, the original is kept)."""
    original_sha = hashlib.sha256(original).hexdigest()
    empty = np.zeros(0, dtype=np.int64)
    if protected is None:
        return FilePatch("copy", original_sha, None, None, empty, empty, empty, original)
    protected_sha = hashlib.sha256(protected).hexdigest()
    copy = FilePatch("copy", original_sha, protected_sha, None, empty, empty, empty, original)
    kind = containers.which(original)
    if kind is not None and containers.which(protected) == kind:
        found = containers.layout(kind, original)
        if found is None:
            return copy
        settings, raw = found
        patch = FilePatch(kind, original_sha, protected_sha, settings, *_diff(raw, containers.decode(kind, protected)))
    else:
        patch = FilePatch("raw", original_sha, protected_sha, None, *_diff(original, protected))
    return patch if len(patch.to_blob()) < len(original) else copy  # a patch never costs more than the file


def apply_patch(patch: FilePatch, protected: bytes | None) -> bytes:
    """The original file's bytes, rebuilt from the protected file's.

    Raises:
        ValueError: the protected bytes are not the ones the patch was made for, or the result is not the original
            (the message says which; the caller names the file).
    """
    if patch.protected_sha256 is not None:
        got = hashlib.sha256(protected or b"").hexdigest()
        if protected is None or got != patch.protected_sha256:
            raise ValueError(f"changed since protection (expected SHA-256 {patch.protected_sha256}, got {got})")
    if patch.layer == "copy":
        result = patch.data
    elif patch.layer in containers.CONTAINERS and patch.layout is not None and protected is not None:
        try:
            raw = containers.decode(patch.layer, protected)
        except (ValueError, OSError, EOFError, zlib.error) as error:
            raise ValueError(f"cannot decompress the protected file ({error})") from error
        result = containers.encode(patch.layer, _splice(raw, patch), patch.layout)
    elif patch.layer == "raw" and protected is not None:
        result = _splice(protected, patch)
    else:
        raise ValueError(f"unknown patch layer {patch.layer!r} (expected raw, gzip, png or copy)")
    if hashlib.sha256(result).hexdigest() != patch.original_sha256:
        raise ValueError(f"the rebuilt file is not the original (expected SHA-256 {patch.original_sha256})")
    return result


_Runs = tuple[np.ndarray, np.ndarray, np.ndarray, bytes]
"""Ranges ``[start, end)`` of the protected bytes, their replacements' sizes, the replacement bytes."""


def _diff(original: bytes, protected: bytes) -> _Runs:
    """Ranges ``[start, end)`` of ``protected`` to replace, the sizes of their replacements, and the original bytes
    that replace them.

    Files of one length are compared byte for byte. Files of two lengths (a DICOM header with other tags) are cut
    where they first differ: the part up to the shorter file's remainder is replaced whole (the header), the rest is
    compared aligned at the end (the pixel data, last in the file)."""
    a, b = np.frombuffer(original, dtype=np.uint8), np.frombuffer(protected, dtype=np.uint8)
    if len(a) == len(b):
        return _runs(a, b, 0, 0)
    n = min(len(a), len(b))
    differ = np.flatnonzero(a[:n] != b[:n])
    prefix = int(differ[0]) if len(differ) else n
    head_a, head_b = len(a) - (n - prefix), len(b) - (n - prefix)  # the rest has one length in both
    starts, ends, sizes, data = _runs(a[head_a:], b[head_b:], head_a, head_b)
    return (
        np.concatenate([[prefix], starts]).astype(np.int64),
        np.concatenate([[head_b], ends]).astype(np.int64),
        np.concatenate([[head_a - prefix], sizes]).astype(np.int64),
        bytes(original[prefix:head_a]) + data,
    )


def _runs(a: np.ndarray, b: np.ndarray, offset_a: int, offset_b: int) -> _Runs:
    """The differing runs of whole words of two equal-length regions (words aligned to the regions' end, which for
    a region at the file start means to the file), as ranges of ``b`` shifted by ``offset_b``, and ``a``'s bytes."""
    del offset_a  # the regions have one length: a run's bytes are at the same place in both
    phase = (-len(a)) % _WORD
    words = np.unique((np.flatnonzero(a != b) + phase) // _WORD)
    if not len(words):
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, b""
    breaks = np.flatnonzero(np.diff(words) > 1)  # runs of adjacent differing words
    starts = np.maximum(words[np.concatenate([[0], breaks + 1])].astype(np.int64) * _WORD - phase, 0)
    ends = np.minimum((words[np.concatenate([breaks, [len(words) - 1]])].astype(np.int64) + 1) * _WORD - phase, len(a))
    covered = np.zeros(len(a) + 1, dtype=np.int32)
    np.add.at(covered, starts, 1)
    np.add.at(covered, ends, -1)
    return starts + offset_b, ends + offset_b, ends - starts, a[np.cumsum(covered[:-1]) > 0].tobytes()


def _splice(protected: bytes, patch: FilePatch) -> bytes:
    pieces, position, offset = [], 0, 0
    for start, end, size in zip(patch.starts.tolist(), patch.ends.tolist(), patch.sizes.tolist()):
        if start < position or end > len(protected) or offset + size > len(patch.data):
            raise ValueError("the patch does not fit the protected file")
        pieces += [protected[position:start], patch.data[offset : offset + size]]
        position, offset = end, offset + size
    pieces.append(protected[position:])
    return b"".join(pieces)
