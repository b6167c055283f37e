"""Synthetic phantoms: valid, labelled, reproducible, fast, with a non-trivial geometry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from umed.audit.floor import threshold_floor
from umed.errors import ConfigError
from umed.io import discover_cases, validate_case
from umed.phantom import make_phantom, make_phantom_dataset


def _bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_default_dataset_is_valid(tmp_path: Path) -> None:
    images, masks = make_phantom_dataset(tmp_path / "phantom")  # no timing here: timings are benchmarks, not tests
    assert (images, masks) == (tmp_path / "phantom" / "images", tmp_path / "phantom" / "masks")
    cases = discover_cases(images, masks)
    assert [c.case_id for c in cases] == [f"phantom_{i:03d}" for i in range(6)]
    dtypes, floors = set(), []
    for case in cases:
        image, meta, labels, _ = validate_case(case)
        assert image.shape == (64, 64, 16)
        assert set(np.unique(labels)) == {0, 1, 2}
        assert 0 < np.count_nonzero(labels == 2) < np.count_nonzero(labels == 1)
        np.testing.assert_allclose(meta.spacing, (0.8, 0.8, 2.5), atol=1e-5)
        assert not np.allclose(meta.affine[:3, :3], np.diag(np.diag(meta.affine[:3, :3])))  # rotated
        dtypes.add((str(meta.disk_dtype), meta.slope, meta.intercept))
        organ, lesion = image[labels == 1], image[labels == 2]
        assert 0.005 <= np.mean(labels == 2) <= 0.02  # a structure of 0.5-2% of the volume, as a tumour core
        assert abs(lesion.mean() - organ.mean()) < 0.5 * organ.std()  # not a brightness difference ...
        detail = image - gaussian_filter(image.astype(np.float32), sigma=(2, 2, 0))  # ... but a fine texture one
        assert detail[labels == 2].std() > 1.5 * detail[labels == 1].std() and organ.std() > 20  # the organ varies too
        floors.append(threshold_floor(image, labels == 2, image, labels == 2).dice)
    assert max(floors) < 0.5  # the best threshold, fitted on the case itself, finds little of the lesion
    assert dtypes == {("float32", 1.0, 0.0), ("int16", 0.25, -100.0)}


def test_same_seed_same_bytes_and_other_seed_differs(tmp_path: Path) -> None:
    first = make_phantom_dataset(tmp_path / "a", n_cases=2, shape=(32, 32, 8), seed=7)
    second = make_phantom_dataset(tmp_path / "b", n_cases=2, shape=(32, 32, 8), seed=7)
    third = make_phantom_dataset(tmp_path / "c", n_cases=2, shape=(32, 32, 8), seed=8)
    assert _bytes(first[0]) == _bytes(second[0]) and _bytes(first[1]) == _bytes(second[1])
    assert _bytes(first[0]) != _bytes(third[0])
    more = make_phantom_dataset(tmp_path / "d", n_cases=3, shape=(32, 32, 8), seed=7)
    assert _bytes(more[0])["phantom_001.nii.gz"] == _bytes(first[0])["phantom_001.nii.gz"]


def test_two_dimensional_phantoms(tmp_path: Path) -> None:
    images, masks = make_phantom_dataset(tmp_path, n_cases=3, ndim=2, shape=(48, 40), image_dtype="int16")
    for case in discover_cases(images, masks):
        image, meta, labels, _ = validate_case(case)
        assert image.shape == labels.shape == (48, 40) and meta.ndim == 2
        assert meta.disk_dtype == np.int16 and labels.max() == 2


def test_make_phantom_uses_only_the_given_generator() -> None:
    state = np.random.get_state()
    a = make_phantom((24, 24, 6), rng=np.random.default_rng(3))
    b = make_phantom((24, 24, 6), rng=np.random.default_rng(3))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert a[0].dtype == np.float32 and a[1].dtype == np.uint8
    after = np.random.get_state()
    assert isinstance(state, tuple) and isinstance(after, tuple)
    assert state[0] == after[0] and np.array_equal(state[1], after[1])


@pytest.mark.parametrize(
    "kwargs",
    [{"n_cases": 0}, {"ndim": 4}, {"shape": (8, 8, 8)}, {"image_dtype": "uint8"}, {"ndim": 3, "shape": (32, 32)}],
)
def test_bad_settings(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(ConfigError, match="phantom"):
        make_phantom_dataset(tmp_path, **kwargs)


def test_int16_raw_phantoms_are_stored_without_scaling(tmp_path: Path) -> None:
    """``int16_raw``: int16 holding the values themselves (slope 1, intercept 0), as CT volumes in HU often are."""
    images, masks = make_phantom_dataset(tmp_path, n_cases=1, shape=(32, 32, 8), image_dtype="int16_raw")
    image, meta, labels, _ = validate_case(discover_cases(images, masks)[0])
    assert (meta.disk_dtype, meta.slope, meta.intercept) == (np.int16, 1.0, 0.0)
    assert image.dtype == np.int16 and labels.max() == 2 and image.max() > 100
