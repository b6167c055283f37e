"""Defenses: each changes what it should, keeps shapes and dtypes, never changes its input, and is seeded."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.losses import DiceCELoss
from scipy import ndimage

from umed.audit.adversarial import pgd_attack
from umed.audit.augment import intensity_augment
from umed.audit.defenses import (
    DEFENSE_NAMES,
    downsample_slices,
    gaussian_filter_samples,
    get_defense,
    jpeg_slices,
    median_filter_samples,
    mix_clean,
    quantize_slices,
)
from umed.errors import ConfigError


@pytest.fixture
def slices() -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:32, :32]
    smooth = (np.sin(yy / 5.0) * np.cos(xx / 7.0) + 1) / 2
    return (smooth[None] + rng.normal(0, 0.03, (4, 32, 32))).astype(np.float32)


@pytest.mark.parametrize("name", ["jpeg", "quantize", "gaussian", "median", "downsample"])
@pytest.mark.parametrize("volumes", [False, True])
def test_data_defenses_change_values_keep_shape_and_input(slices: np.ndarray, name: str, volumes: bool) -> None:
    x = slices.reshape(2, 32, 32, 2) if volumes else slices
    before = x.copy()
    out, y = get_defense(name).prepare(x, np.zeros(x.shape, np.uint8))
    assert out.shape == x.shape and out.dtype == np.float32 and y.shape == x.shape
    assert np.array_equal(x, before)
    assert not np.array_equal(out, x)
    assert np.abs(out - x).mean() < 0.05  # a defense degrades, it does not destroy


def test_jpeg_and_quantize_stay_in_each_slice_range(slices: np.ndarray) -> None:
    for out in (jpeg_slices(slices, quality=75), quantize_slices(slices)):
        for s, o in zip(slices, out):
            assert s.min() - 1e-6 <= o.min() and o.max() <= s.max() + 1e-6
    assert np.abs(quantize_slices(slices) - slices).max() <= (slices.max() - slices.min()) / 255


def test_filters_are_per_sample(slices: np.ndarray) -> None:
    expected = np.stack([ndimage.gaussian_filter(s, 1.0, mode="reflect") for s in slices])
    np.testing.assert_allclose(gaussian_filter_samples(slices, sigma=1.0), expected, atol=1e-6)
    spiky = np.zeros((2, 9, 9), np.float32)
    spiky[0, 4, 4] = 1.0
    assert median_filter_samples(spiky).max() == 0.0


def test_mix_replaces_half_the_cases(slices: np.ndarray) -> None:
    clean = slices
    protected = slices + 0.01
    groups = np.array([0, 1, 2, 3])
    mixed, made_clean = mix_clean(protected, clean, groups, ratio=0.5, rng=np.random.default_rng(0))
    assert len(made_clean) == 2
    for g in range(4):
        expected = clean[g] if g in made_clean else protected[g]
        assert np.array_equal(mixed[g], expected)
    out, _ = get_defense("mix").prepare(protected, clean, clean_x=clean, groups=groups, rng=np.random.default_rng(0))
    assert np.array_equal(out, mixed)
    with pytest.raises(ConfigError):
        mix_clean(protected, clean, groups, ratio=1.5, rng=np.random.default_rng(0))


def test_pgd_stays_in_the_ball_and_leaves_parameters_alone() -> None:
    model = torch.nn.Conv2d(1, 2, 3, padding=1)
    x = torch.rand(2, 1, 16, 16)
    y = (torch.rand(2, 1, 16, 16) > 0.5).float()
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    adv = pgd_attack(model, loss_fn, x, y, eps=8 / 255, steps=3, generator=torch.Generator().manual_seed(0))
    assert adv.shape == x.shape and not adv.requires_grad
    assert float((adv - x).abs().max()) <= 8 / 255 + 1e-6 and not torch.equal(adv, x)
    assert all(p.grad is None for p in model.parameters())
    with torch.no_grad():
        assert float(loss_fn(model(adv), y)) > float(loss_fn(model(x), y))


def test_batch_defenses_are_identity_for_data_defenses() -> None:
    x, y = torch.rand(1, 1, 8, 8), torch.zeros(1, 1, 8, 8)
    out = get_defense("gaussian").on_batch(x, y, model=None, loss_fn=None, generator=torch.Generator())
    assert out[0] is x and out[1] is y


def test_every_name_resolves_and_unknown_is_a_config_error() -> None:
    assert [get_defense(n).name for n in DEFENSE_NAMES] == list(DEFENSE_NAMES)
    assert get_defense(" JPEG ").quality == 75
    with pytest.raises(ConfigError, match=r"defense: unknown name 'blur' \(expected one of none, adversarial"):
        get_defense("blur")


def test_downsample_removes_a_period_two_pattern_and_keeps_smooth_content(slices: np.ndarray) -> None:
    yy, xx = np.mgrid[:32, :32]
    checker = (((yy + xx) % 2) * 2 - 1).astype(np.float32) * 8 / 255
    smooth = np.broadcast_to((np.sin(yy / 6.0) + 1) / 2, (2, 32, 32)).astype(np.float32)
    out = downsample_slices(smooth + checker)
    assert np.abs(out - downsample_slices(smooth)).max() < 1e-6  # 2x2 averaging cancels the checkerboard exactly
    assert np.abs(out - smooth).mean() < 0.02


def test_intensity_augment_is_seeded_and_changes_only_intensities() -> None:
    x = torch.rand(6, 1, 16, 16)
    a = intensity_augment(x, generator=torch.Generator().manual_seed(3))
    b = intensity_augment(x, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == x.shape and a.dtype == x.dtype and not torch.equal(a, x)
    y = torch.zeros(6, 1, 16, 16)
    out_x, out_y = get_defense("intensity").on_batch(
        x, y, model=None, loss_fn=None, generator=torch.Generator().manual_seed(3)
    )
    assert torch.equal(out_x, a) and out_y is y
