"""Validation: every bad input raises an error naming its file and problem, and nothing is written."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from umed.case import Case
from umed.errors import GeometryError, InputError
from umed.io import mask_is_empty, validate_case


@pytest.fixture
def case_dir(nifti_float):
    """The fixture case (image, mask, data, labels, affine) in ``tmp_path/data``."""
    return nifti_float


def _save(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


def _tree(root: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(root)), p.stat().st_mtime_ns) for p in root.rglob("*"))


def _expect(case: Case, error_type: type, path: Path, *problems: str) -> str:
    """Validation fails with ``error_type``, a message starting with ``path`` naming each problem, writing nothing."""
    root = Path(path).parent.parent
    before = _tree(root)
    with pytest.raises(error_type) as error:
        validate_case(case)
    assert _tree(root) == before  # nothing written, nothing touched
    message = str(error.value)
    assert message.startswith(f"{path}: "), message
    for problem in problems:
        assert problem in message, message
    assert "[" not in message.split("(expected")[0]  # no array contents before the expected/got part
    return message


def test_good_case(case_dir) -> None:
    image, meta, labels, mask_meta = validate_case(Case("case_a", case_dir.image, case_dir.mask))
    assert image.shape == labels.shape == meta.shape
    assert labels.dtype == np.int16 and set(np.unique(labels)) == {0, 1, 2}
    assert not mask_is_empty(labels)


def test_real_brats_case(brats_dir: Path) -> None:
    name = "brats_2013_pat0002_1.nii.gz"
    image, meta, labels, _ = validate_case(Case("c", brats_dir / "volumes" / name, brats_dir / "masks" / name))
    assert labels.dtype == np.int16 and set(np.unique(labels)) <= {0, 1, 2, 3, 4}
    assert 0.005 < np.count_nonzero(labels) / labels.size < 0.03


def test_missing_mask(case_dir) -> None:
    _expect(Case("case_a", case_dir.image, None), InputError, case_dir.image, "missing mask", "case_a")


def test_unreadable_and_truncated_files(case_dir) -> None:
    folder = case_dir.image.parent
    broken = folder / "broken.nii.gz"
    broken.write_bytes(b"\x1f\x8b garbage, not gzip")
    _expect(Case("c", broken, case_dir.mask), InputError, broken, "unreadable NIfTI")
    truncated = folder / "truncated.nii.gz"
    content = gzip.open(case_dir.mask).read()
    truncated.write_bytes(gzip.compress(content[:-40]))
    _expect(Case("c", case_dir.image, truncated), InputError, truncated, "truncated file", "expected 960 bytes")
    missing = folder / "gone.nii.gz"
    _expect(Case("c", missing, case_dir.mask), InputError, missing, "file not found")


def test_shape_mismatch(case_dir) -> None:
    other = _save(case_dir.image.parent / "small_mask.nii.gz", case_dir.labels[:, :, :7].copy(), case_dir.affine)
    _expect(
        Case("c", case_dir.image, other),
        GeometryError,
        other,
        "mask shape differs",
        "expected (10, 12, 8), got (10, 12, 7)",
    )


def test_affine_mismatch(case_dir) -> None:
    moved = case_dir.affine.copy()
    moved[:3, 3] += (0.0, 0.2, 0.0)
    other = _save(case_dir.image.parent / "moved_mask.nii.gz", case_dir.labels, moved)
    _expect(Case("c", case_dir.image, other), GeometryError, other, "mask affine differs", "by 0.2 mm")


def test_spacing_mismatch(case_dir) -> None:
    scaled = case_dir.affine.copy()
    scaled[:3, 2] *= 1.2  # 2.5 mm -> 3 mm slices
    other = _save(case_dir.image.parent / "thick_mask.nii.gz", case_dir.labels, scaled)
    _expect(
        Case("c", case_dir.image, other),
        GeometryError,
        other,
        "mask spacing differs",
        "expected (0.7, 0.9, 2.5)",
        "got (0.7, 0.9, 3)",
    )


def test_small_affine_difference_is_tolerated(case_dir) -> None:
    near = case_dir.affine.copy()
    near[:3, 3] += 1e-4
    other = _save(case_dir.image.parent / "near_mask.nii.gz", case_dir.labels, near)
    validate_case(Case("c", case_dir.image, other))


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_non_finite_voxels(case_dir, bad_value: float) -> None:
    data = case_dir.data.copy()
    data[1, 2, 3] = bad_value
    data[4, 5, 6] = bad_value
    bad = _save(case_dir.image.parent / "nan.nii.gz", data, case_dir.affine)
    _expect(Case("c", bad, case_dir.mask), InputError, bad, "NaN or Inf voxels", "got 2 non-finite voxels")


def test_four_dimensional_images(case_dir) -> None:
    folder = case_dir.image.parent
    channels = _save(folder / "channels.nii.gz", np.stack([case_dir.data] * 2, axis=-1), case_dir.affine)
    _expect(
        Case("c", channels, case_dir.mask),
        InputError,
        channels,
        "one channel",
        "_0000/_0001",
        "got shape (10, 12, 8, 2)",
    )
    single = _save(folder / "single.nii.gz", case_dir.data[..., None], case_dir.affine)
    image, meta, labels, _ = validate_case(Case("c", single, case_dir.mask))
    assert image.shape == meta.shape == labels.shape == (10, 12, 8)


def test_non_integer_labels(case_dir) -> None:
    labels = case_dir.labels.astype(np.float32)
    labels[3, 3, 3] = 0.5
    bad = _save(case_dir.image.parent / "half_mask.nii.gz", labels, case_dir.affine)
    _expect(Case("c", case_dir.image, bad), InputError, bad, "non-integer labels", "got 1 voxels")


def test_empty_mask_is_returned_not_raised(case_dir) -> None:
    empty = _save(case_dir.image.parent / "empty_mask.nii.gz", np.zeros_like(case_dir.labels), case_dir.affine)
    _, _, labels, _ = validate_case(Case("c", case_dir.image, empty))
    assert mask_is_empty(labels) and labels.shape == (10, 12, 8)


def test_png_image_with_png_mask_of_another_size(png_files, tmp_path: Path) -> None:
    from PIL import Image

    mask = tmp_path / "mask.png"
    Image.fromarray(np.zeros((12, 17), np.uint8)).save(mask)
    _expect(Case("grey8", png_files["grey8"], mask), GeometryError, mask, "expected (13, 17), got (12, 17)")
