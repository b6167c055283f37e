"""Tests of umed.regions: foreground, contour band, interior, support and the texture map."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage import morphology

from umed import regions
from umed.errors import ConfigError


def disk_mask(shape=(40, 48), centre=(20, 24), radius=9.0) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def test_foreground_default_and_label_set():
    labels = np.array([[0, 1, 2], [3, 4, 0]])
    assert regions.foreground(labels).tolist() == [[False, True, True], [True, True, False]]
    assert regions.foreground(labels, [1, 4]).tolist() == [[False, True, False], [False, True, False]]
    assert regions.foreground(labels, (2,)).dtype == bool


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("wanted", [[2], [1, 3, 4], [0, 255], [-1, 300], list(range(12))])
def test_foreground_selects_the_voxels_np_isin_selects(dtype, wanted):
    labels = np.random.default_rng(0).integers(0, 6, size=(7, 9, 5)).astype(dtype)
    labels[0, 0, 0] = 255  # every dtype here holds it
    if np.dtype(dtype).kind == "f":
        labels[0, 0, 1] = 4.5  # between labels: never selected
    structure = regions.foreground(labels, wanted)
    assert structure.dtype == bool and structure.shape == labels.shape
    np.testing.assert_array_equal(structure, np.isin(labels, wanted))


@pytest.mark.parametrize("width", [1, 2, 3])
def test_band_matches_skimage_disk_morphology(width):
    fg = disk_mask()
    footprint = morphology.disk(width)
    expected = morphology.dilation(fg, footprint) & ~morphology.erosion(fg, footprint)
    np.testing.assert_array_equal(regions.contour_band(fg, width), expected)


def test_band_interior_support_partition():
    fg = disk_mask()
    band = regions.contour_band(fg, 3)
    inner = regions.interior(fg, 3)
    allowed = regions.support(fg, 3)
    np.testing.assert_array_equal(inner, fg & ~band)
    np.testing.assert_array_equal(allowed, fg | band)
    assert inner.any() and (band & fg).any() and (band & ~fg).any()
    # every band voxel is within 3 voxels of the contour (Euclidean)
    distance_out = ndimage.distance_transform_edt(~fg)
    distance_in = ndimage.distance_transform_edt(fg)
    assert distance_out[band & ~fg].max() <= 3 and distance_in[band & fg].max() <= 3 + 1e-9


def test_width_zero_and_empty_masks():
    fg = disk_mask()
    assert not regions.contour_band(fg, 0).any()
    np.testing.assert_array_equal(regions.support(fg, 0), fg)
    empty = np.zeros((16, 16), dtype=bool)
    assert not regions.support(empty, 3).any()


def test_structure_at_image_border_has_no_band_along_the_border():
    fg = np.zeros((20, 20), dtype=bool)
    fg[:, :10] = True  # left half: its only true contour is the column boundary at x = 10
    band = regions.contour_band(fg, 2)
    assert not band[:, :8].any()
    assert band[:, 8:12].all() and not band[:, 12:].any()


def test_batched_slices_do_not_mix_but_volumes_do():
    a, b = disk_mask(centre=(20, 24)), np.zeros((40, 48), dtype=bool)
    stack = np.stack([a, b])
    batched = regions.contour_band(stack, 2, batch=True)
    np.testing.assert_array_equal(batched[0], regions.contour_band(a, 2))
    assert not batched[1].any()
    volume = regions.contour_band(stack, 2)  # 3D: the ball reaches the neighbouring slice
    assert volume[1].any()


def test_three_dimensional_ball():
    zz, yy, xx = np.mgrid[:21, :21, :21]
    fg = (zz - 10) ** 2 + (yy - 10) ** 2 + (xx - 10) ** 2 <= 36
    ball = morphology.ball(2)
    expected = ndimage.binary_dilation(fg, ball) & ~ndimage.binary_erosion(fg, ball, border_value=1)
    np.testing.assert_array_equal(regions.contour_band(fg, 2), expected)


@pytest.mark.parametrize("width", [-1, 1.5, True, "3"])
def test_bad_width_is_a_config_error(width):
    with pytest.raises(ConfigError, match="band_width"):
        regions.contour_band(disk_mask(), width)


def test_bad_shape_is_rejected():
    with pytest.raises(ValueError, match="expected an array"):
        regions.contour_band(np.ones((4, 4), dtype=bool), 1, batch=True)
    with pytest.raises(ValueError, match="expected an array"):
        regions.contour_band(np.zeros((4,), dtype=bool), 1)


def test_texture_map_range_and_contrast():
    rng = np.random.default_rng(0)
    image = np.full((40, 48), 0.5, dtype=np.float32)
    image[:, 24:] += 0.1 * rng.standard_normal((40, 24)).astype(np.float32)  # textured right half
    fg = np.ones_like(image, dtype=bool)
    tau = regions.texture_map(image, fg, window=5, tau_min=0.25)
    assert tau.dtype == np.float32 and tau.shape == image.shape
    assert tau.min() >= 0.25 and tau.max() <= 1.0
    assert np.allclose(tau[:, :18], 0.25)  # flat, away from the seam
    assert tau[:, 30:].mean() > 0.6


def test_texture_map_flat_image_and_input_untouched():
    image = np.full((16, 16), 0.3, dtype=np.float32)
    copy = image.copy()
    tau = regions.texture_map(image, None, tau_min=0.1)
    np.testing.assert_array_equal(tau, np.full_like(tau, 0.1))
    np.testing.assert_array_equal(image, copy)


def test_texture_map_batch_is_per_slice():
    rng = np.random.default_rng(1)
    images = rng.random((3, 24, 24)).astype(np.float32)
    images[1] *= 0.01  # a nearly flat slice is normalised by its own robust max
    fg = np.stack([disk_mask((24, 24), (12, 12), 7)] * 3)
    batched = regions.texture_map(images, fg, batch=True)
    for i in range(3):
        np.testing.assert_allclose(batched[i], regions.texture_map(images[i], fg[i]), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kwargs", [{"window": 1}, {"tau_min": 1.5}, {"tau_min": -0.1}])
def test_texture_map_bad_settings(kwargs):
    with pytest.raises(ConfigError):
        regions.texture_map(np.zeros((8, 8)), **kwargs)
