"""Normalised intensity space: fitting, exact inversion, and quantisation to the file's stored values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from umed.errors import ConfigError
from umed.intensity import IntensityMapping, fit_mapping
from umed.io import load_case, quantize


def test_percentile_mapping_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    image = rng.normal(300.0, 50.0, (20, 20, 6)).astype(np.float32)
    mapping = fit_mapping(image)
    low, high = np.percentile(image, [0.5, 99.5])
    assert mapping.mode == "percentile"
    assert (mapping.low, mapping.high) == pytest.approx((low, high))
    unit = mapping.to_unit(image)
    assert unit.dtype == np.float32 and unit.shape == image.shape
    assert np.mean((unit >= 0) & (unit <= 1)) == pytest.approx(0.99, abs=0.002)
    assert unit.min() < 0 and unit.max() > 1  # not clipped


def test_mask_and_custom_percentiles() -> None:
    image = np.zeros((10, 10))
    image[2:8, 2:8] = np.linspace(100, 200, 36).reshape(6, 6)
    mask = image > 0
    mapping = fit_mapping(image, mask=mask, percentiles=(0, 100))
    assert (mapping.low, mapping.high) == (100.0, 200.0)
    assert fit_mapping(image, mask=np.zeros_like(mask), percentiles=(0, 100)).low == 0.0  # empty mask: whole image
    with pytest.raises(ConfigError, match="mask: shape differs"):
        fit_mapping(image, mask=mask[:5])


def test_window_mapping_for_ct() -> None:
    mapping = fit_mapping(np.zeros((3, 3)), mode="window", window=(-1000, 1000))
    assert mapping == IntensityMapping(-1000.0, 1000.0, "window")
    np.testing.assert_allclose(mapping.to_unit(np.array([-1000.0, 0.0, 1000.0, 3000.0])), [0.0, 0.5, 1.0, 2.0])
    assert mapping.span * 8 / 255 == pytest.approx(62.745, abs=1e-3)  # 8/255 of the window in HU


def test_constant_image_does_not_divide_by_zero() -> None:
    mapping = fit_mapping(np.full((4, 4), 7.0))
    assert (mapping.low, mapping.high) == (7.0, 8.0)
    np.testing.assert_array_equal(mapping.to_unit(np.full((2,), 7.0)), [0.0, 0.0])


def test_bad_settings_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="window"):
        fit_mapping(np.zeros(3), mode="window")
    with pytest.raises(ConfigError, match="low < high"):
        fit_mapping(np.zeros(3), mode="window", window=(5, 5))
    with pytest.raises(ConfigError, match="percentile"):
        fit_mapping(np.zeros(3), mode="histogram")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="percentiles"):
        fit_mapping(np.zeros(3), percentiles=(99, 1))
    with pytest.raises(ConfigError):
        IntensityMapping(1.0, 1.0)


def test_to_dict_round_trips_through_json() -> None:
    mapping = IntensityMapping(np.float32(-3.25), 1e4 / 3, "percentile")
    again = IntensityMapping.from_dict(json.loads(json.dumps(mapping.to_dict())))
    assert again == mapping and isinstance(again.low, float)
    with pytest.raises(ConfigError, match="expected keys"):
        IntensityMapping.from_dict({"low": 0})


def test_from_unit_inverts_to_unit() -> None:
    rng = np.random.default_rng(1)
    x = rng.uniform(-2000, 3000, 10_000)
    mapping = IntensityMapping(-1000.0, 2000.0)
    back = mapping.from_unit(mapping.to_unit(x))
    assert back.dtype == np.float64
    np.testing.assert_allclose(back, x, rtol=0, atol=mapping.span * 2**-23 * 4)  # float32 rounding of the unit value
    u = rng.uniform(-0.5, 1.5, 1000)
    np.testing.assert_allclose(mapping.to_unit(mapping.from_unit(u)), u.astype(np.float32), rtol=0, atol=1e-7)


def test_untouched_voxels_invert_exactly_after_quantisation(nifti_int16_scaled) -> None:
    image, meta = load_case(nifti_int16_scaled.image)
    mapping = fit_mapping(image)
    np.testing.assert_array_equal(quantize(mapping.from_unit(mapping.to_unit(image)), meta), image)


def test_float_file_inverts_to_float32_precision(brats_dir: Path) -> None:
    image, meta = load_case(brats_dir / "volumes" / "brats_2013_pat0001_1.nii.gz")
    mapping = fit_mapping(image)
    back = quantize(mapping.from_unit(mapping.to_unit(image)), meta)
    assert back.dtype == np.float32
    assert np.abs(back.astype(np.float64) - image).max() <= mapping.span * 2**-22


@pytest.mark.parametrize("eps", [1 / 255, 4 / 255, 8 / 255])
def test_perturbation_rounds_within_half_a_stored_unit(nifti_int16_scaled, eps: float) -> None:
    image, meta = load_case(nifti_int16_scaled.image)  # int16, slope 0.5, intercept -10
    mapping = fit_mapping(image)
    rng = np.random.default_rng(2)
    delta = rng.uniform(-eps, eps, image.shape).astype(np.float32)
    wanted = mapping.from_unit(mapping.to_unit(image) + delta)
    stored = quantize(wanted, meta)
    inside = (wanted > -10 + 0.5 * -32768) & (wanted < -10 + 0.5 * 32767)  # not clipped by the dtype
    error = np.abs(stored - wanted)[inside]
    assert error.max() <= meta.slope / 2 + 1e-9
    change = np.abs(stored - image)[inside] / mapping.span
    assert change.max() <= eps + meta.slope / 2 / mapping.span + 1e-6  # the budget, up to the rounding step
    np.testing.assert_array_equal(quantize(stored, meta), stored)  # idempotent


def test_counted_percentiles_equal_numpys() -> None:
    from umed.intensity import percentiles_of

    rng = np.random.default_rng(0)
    for dtype in (np.int16, np.uint16, np.int8, np.uint8):
        info = np.iinfo(dtype)
        for size in (1, 2, 7, 1000, 30_001):
            # within half the range: numpy subtracts two order statistics in the array's dtype, which wraps when they
            # are further apart (percentiles_of does it in float64)
            values = rng.integers(info.min // 2, int(info.max) // 2 + 1, size).astype(dtype)
            narrow = rng.integers(0, 9, size).astype(dtype)  # many ties
            for array in (values, narrow, np.asfortranarray(values.reshape(size, 1, 1))):
                q = (0.5, 99.5, float(rng.uniform(0, 100)), 0.0, 100.0)
                assert percentiles_of(array, q) == tuple(float(v) for v in np.percentile(array, list(q)))
