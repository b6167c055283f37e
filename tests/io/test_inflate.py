"""umed.io.inflate: the fast gzip reader gives exactly what gzip gives, and refuses what gzip refuses."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import pytest

import umed.io.inflate as inflate
from umed.errors import InputError
from umed.io import load_case
from umed.io.inflate import INFLATE_ERRORS, GzipReader


def _payload(size: int = 5_000_000) -> bytes:
    rng = np.random.default_rng(0)
    return (rng.integers(0, 6, size, dtype=np.uint8) * 40).tobytes()  # compressible, several inflate steps


def test_reads_every_member_and_ignores_zero_padding(tmp_path: Path) -> None:
    first, second = _payload(), b"second member"
    path = tmp_path / "two.gz"
    path.write_bytes(gzip.compress(first, mtime=0) + gzip.compress(second, mtime=0) + b"\x00" * 7)
    with GzipReader(path) as reader:
        head = reader.read(10)
        buffer = bytearray(len(first) + len(second))
        count = reader.readinto(memoryview(buffer)[10:])
        assert reader.read(5) == b""
    assert head + bytes(buffer[10 : 10 + count]) == first + second
    assert gzip.decompress(path.read_bytes()) == first + second


def test_readinto_returns_fewer_bytes_only_at_the_end(tmp_path: Path) -> None:
    path = tmp_path / "a.gz"
    path.write_bytes(gzip.compress(b"abc"))
    buffer = bytearray(10)
    assert GzipReader(path).readinto(buffer) == 3 and bytes(buffer[:3]) == b"abc"
    assert GzipReader(path).read() == b"abc"


def test_truncated_and_corrupt_files_raise(tmp_path: Path) -> None:
    content = gzip.compress(_payload(200_000), mtime=0)
    cut, corrupt = tmp_path / "cut.gz", tmp_path / "corrupt.gz"
    cut.write_bytes(content[: len(content) // 2])
    damaged = bytearray(content)
    damaged[-6] ^= 0xFF  # the CRC
    corrupt.write_bytes(bytes(damaged))
    with pytest.raises(EOFError):
        GzipReader(cut).read()
    with pytest.raises(INFLATE_ERRORS):
        GzipReader(corrupt).read()
    with pytest.raises(INFLATE_ERRORS):
        GzipReader(corrupt).readinto(bytearray(300_000))


def test_corrupt_nifti_names_the_file(nifti_float, tmp_path: Path) -> None:
    content = bytearray(nifti_float.image.read_bytes())
    content[-6] ^= 0xFF
    path = tmp_path / "bad.nii.gz"
    path.write_bytes(bytes(content))
    with pytest.raises(InputError) as error:
        load_case(path)
    assert str(error.value).startswith(f"{path}: unreadable NIfTI file")


def test_zlib_fallback_reads_the_same_voxels(nifti_float, monkeypatch: pytest.MonkeyPatch) -> None:
    fast, _ = load_case(nifti_float.image)
    monkeypatch.setattr(inflate, "_INFLATE", zlib)
    slow, _ = load_case(nifti_float.image)
    np.testing.assert_array_equal(fast, slow)
    np.testing.assert_array_equal(fast, nifti_float.data)
