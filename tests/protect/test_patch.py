"""umed.protect.patch: byte patches from a protected file back to its original (raw, gzip and copy layers)."""

from __future__ import annotations

import gzip
import io
import zlib

import numpy as np
import pytest

from umed.protect.patch import FilePatch, apply_patch, make_patch


def _pair(seed: int = 0, n: int = 20000, changed: int = 300) -> tuple[bytes, bytes]:
    """float32 bytes and a copy with ``changed`` voxels altered."""
    rng = np.random.default_rng(seed)
    original = rng.normal(100, 30, n).astype(np.float32)
    protected = original.copy()
    index = rng.choice(n, changed, replace=False)
    protected[index] += rng.uniform(0.5, 2.0, changed).astype(np.float32)
    return original.tobytes(), protected.tobytes()


def _through_key(patch: FilePatch) -> FilePatch:
    return FilePatch.from_parts(patch.to_json(), patch.to_blob())


def test_raw_patch_holds_only_the_changed_words_and_rebuilds_the_original() -> None:
    original, protected = _pair()
    patch = make_patch(original, protected)
    assert patch.layer == "raw"
    changed = np.count_nonzero(np.frombuffer(original, np.float32) != np.frombuffer(protected, np.float32))
    assert len(patch.data) == 4 * changed  # whole float32 words, nothing else
    assert apply_patch(_through_key(patch), protected) == original


def test_files_of_two_lengths_keep_the_header_whole_and_the_tail_sparse() -> None:
    """A DICOM-like file: the protected header gained tags, the pixel data at the end changed in a few voxels."""
    original, protected = _pair(1)
    header_a, header_b = b"HEADER" * 20 + b"UID=1.2.3", b"HEADER" * 20 + b"UID=1.2.3.4.5;DERIVED"
    patch = make_patch(header_a + original, header_b + protected)
    assert apply_patch(_through_key(patch), header_b + protected) == header_a + original
    assert len(patch.data) < len(original) // 10


def test_gzip_is_rebuilt_with_its_own_header_and_zlib_level() -> None:
    original, protected = _pair(2)
    buffer = io.BytesIO()
    with gzip.GzipFile("case.nii", "wb", compresslevel=9, fileobj=buffer, mtime=987654) as handle:
        handle.write(original)
    compressed = buffer.getvalue()
    protected_gz = gzip.compress(protected, compresslevel=1, mtime=0)
    patch = make_patch(compressed, protected_gz)
    assert patch.layer == "gzip" and patch.layout is not None and patch.layout["level"] == 9
    assert apply_patch(_through_key(patch), protected_gz) == compressed
    assert len(patch.data) < len(compressed) // 10


def test_gzip_no_zlib_setting_reproduces_is_kept_whole() -> None:
    """Two gzip members (as a concatenating tool writes): no single deflate stream gives the bytes back."""
    original, protected = _pair(3)
    half = len(original) // 2
    compressed = gzip.compress(original[:half], mtime=1) + gzip.compress(original[half:], mtime=1)
    patch = make_patch(compressed, gzip.compress(protected, mtime=1))
    assert patch.layer == "copy" and patch.data == compressed
    assert apply_patch(_through_key(patch), gzip.compress(protected, mtime=1)) == compressed


def test_a_stream_of_an_untried_zlib_setting_is_kept_whole() -> None:
    original, protected = _pair(4)
    deflater = zlib.compressobj(5, zlib.DEFLATED, 31, 3, zlib.Z_FILTERED)  # gzip wrapper, memLevel 3: not tried
    compressed = deflater.compress(original) + deflater.flush()
    assert gzip.decompress(compressed) == original
    patch = make_patch(compressed, gzip.compress(protected, mtime=0))
    assert patch.layer == "copy"
    assert apply_patch(_through_key(patch), gzip.compress(protected, mtime=0)) == compressed


def test_other_protected_bytes_are_refused() -> None:
    original, protected = _pair(5)
    patch = make_patch(original, protected)
    with pytest.raises(ValueError, match="changed since protection"):
        apply_patch(patch, protected[:-1] + bytes([protected[-1] ^ 1]))
    with pytest.raises(ValueError, match="truncated patch"):
        FilePatch.from_parts(patch.to_json(), patch.to_blob()[:10])


def test_png_scanlines_are_patched_and_the_png_rebuilt() -> None:
    from PIL import Image

    rng = np.random.default_rng(6)
    pixels = rng.integers(0, 256, (48, 40)).astype(np.uint8)
    changed = pixels.copy()
    changed[20:24, 10:14] ^= 3
    files = []
    for array in (pixels, changed):
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="PNG")
        files.append(buffer.getvalue())
    patch = make_patch(*files)
    assert patch.layer == "png" and len(patch.data) < len(files[0]) // 4
    assert apply_patch(_through_key(patch), files[1]) == files[0]


def test_a_patch_larger_than_the_file_is_a_copy() -> None:
    original = np.random.default_rng(7).integers(0, 256, 4000).astype(np.uint8).tobytes()
    patch = make_patch(original, bytes(255 - b for b in original))
    assert patch.layer == "copy" and apply_patch(_through_key(patch), bytes(255 - b for b in original)) == original


def test_no_counterpart_keeps_the_original_whole() -> None:
    patch = make_patch(b"an extra file of the series", None)
    assert patch.layer == "copy" and apply_patch(_through_key(patch), None) == b"an extra file of the series"
