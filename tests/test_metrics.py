"""umed.metrics against scikit-image and MONAI on the same arrays; conventions (inf, empty masks)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.metrics import DiceMetric, compute_hausdorff_distance
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from umed.errors import ConfigError, GeometryError
from umed.metrics import dice, dice_per_label, hd95_per_image, max_abs_change, psnr, ssim


@pytest.fixture
def pair() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    ref = rng.random((20, 24, 9)).astype(np.float32)
    return ref, ref + rng.normal(0, 0.02, ref.shape).astype(np.float32)


@pytest.mark.parametrize("ndim", [2, 3])
def test_psnr_and_ssim_equal_scikit_image(pair, ndim: int) -> None:
    ref, test = pair
    if ndim == 2:
        ref, test = ref[..., 0], test[..., 0]
    assert psnr(ref, test, data_range=1.0) == pytest.approx(
        peak_signal_noise_ratio(ref, test, data_range=1.0), rel=1e-9
    )
    assert ssim(ref, test, data_range=1.0) == pytest.approx(structural_similarity(ref, test, data_range=1.0), rel=1e-12)
    ref64, test64 = ref.astype(np.float64), test.astype(np.float64)
    assert ssim(ref64, test64, data_range=1.0) == pytest.approx(
        structural_similarity(ref64, test64, data_range=1.0), rel=1e-12
    )


def test_psnr_equals_scikit_image_on_uint8() -> None:
    rng = np.random.default_rng(1)
    ref = rng.integers(0, 256, (16, 16), dtype=np.uint8)
    test = np.clip(ref.astype(int) + rng.integers(-3, 4, ref.shape), 0, 255).astype(np.uint8)
    assert psnr(ref, test, data_range=255) == pytest.approx(peak_signal_noise_ratio(ref, test, data_range=255))


def test_psnr_conventions_and_mask(pair) -> None:
    ref, test = pair
    assert psnr(ref, ref, data_range=1.0) == math.inf
    mask = np.zeros(ref.shape, bool)
    mask[2:8, 3:9, 1:4] = True
    expected = peak_signal_noise_ratio(ref[mask], test[mask], data_range=1.0)
    assert psnr(ref, test, data_range=1.0, mask=mask) == pytest.approx(expected)
    assert math.isnan(psnr(ref, test, data_range=1.0, mask=np.zeros(ref.shape, bool)))
    with pytest.raises(GeometryError, match=r"expected \(20, 24, 9\)"):
        psnr(ref, test[:-1], data_range=1.0)
    with pytest.raises(ConfigError):
        psnr(ref, test, data_range=0)


def test_ssim_small_axis_shrinks_the_window() -> None:
    rng = np.random.default_rng(2)
    ref = rng.random((12, 12, 5))
    test = ref + 0.01
    assert ssim(ref, test, data_range=1.0) == pytest.approx(
        structural_similarity(ref, test, data_range=1.0, win_size=5)
    )
    assert ssim(ref, ref, data_range=1.0) == pytest.approx(1.0)


def test_max_abs_change() -> None:
    ref = np.zeros((4, 4), np.float32)
    test = ref.copy()
    test[1, 2], test[3, 3] = -0.5, 0.25
    assert max_abs_change(ref, test) == 0.5
    mask = np.zeros((4, 4), bool)
    mask[3, 3] = True
    assert max_abs_change(ref, test, mask=mask) == 0.25
    assert max_abs_change(ref, test, mask=np.zeros((4, 4), bool)) == 0.0


def _monai_dice(pred: np.ndarray, target: np.ndarray) -> float:
    """MONAI's Dice of the whole stack as one image (so all voxels count jointly)."""
    metric = DiceMetric(include_background=False, reduction="mean", ignore_empty=False)
    p = torch.from_numpy(pred != 0)[None, None]
    t = torch.from_numpy(target != 0)[None, None]
    metric(torch.cat([~p, p], 1).float(), torch.cat([~t, t], 1).float())
    return float(metric.aggregate())


def test_dice_equals_monai_dicemetric() -> None:
    rng = np.random.default_rng(3)
    pred = rng.random((5, 16, 16)) > 0.6
    target = rng.random((5, 16, 16)) > 0.5
    assert dice(pred, target) == pytest.approx(_monai_dice(pred, target))
    empty = np.zeros((5, 16, 16), bool)
    assert dice(empty, empty) == 1.0 == pytest.approx(_monai_dice(empty, empty))
    assert dice(pred, empty) == 0.0 == pytest.approx(_monai_dice(pred, empty))
    with pytest.raises(GeometryError):
        dice(pred, target[:-1])


def test_dice_per_label_ignores_the_other_labels() -> None:
    labels = np.array([[0, 1, 1, 2, 2, 0]])
    assert dice_per_label(labels > 0, labels) == {1: 1.0, 2: 1.0}
    assert dice_per_label(labels == 1, labels) == {1: 1.0, 2: 0.0}
    assert dice_per_label(labels == 1, labels == 1) == {}


# ------------------------------------------------------------------------- SSIM from the box around the changes


def test_ssim_changed_equals_scikit_image_on_real_brats_volumes(brats_dir) -> None:
    """Real T1c volumes changed the way a protector changes them (tumour plus a 3-voxel ring, up to 8/255 of the
    span), plus one change at the volume's corner so the reflected border is exercised: the box shortcut gives
    scikit-image's whole-volume mean SSIM to 1e-6, far faster."""
    import nibabel as nib
    from scipy import ndimage

    from umed.intensity import fit_mapping
    from umed.metrics import changed_box, ssim_changed

    rng = np.random.default_rng(0)
    for case in ("brats_2013_pat0001_1", "brats_2013_pat0004_1"):
        image = np.asarray(nib.load(brats_dir / "t1c" / f"{case}.nii.gz").dataobj)
        labels = np.asarray(nib.load(brats_dir / "masks" / f"{case}.nii.gz").dataobj)
        mapping = fit_mapping(image)
        support = ndimage.binary_dilation(labels > 0, iterations=3)
        changed = image.copy()
        changed[support] += (rng.uniform(-8, 8, int(support.sum())) / 255 * mapping.span).astype(np.float32)
        changed[:2, :3, :1] += np.float32(mapping.span / 255)
        reference = structural_similarity(mapping.to_unit(image), mapping.to_unit(changed), data_range=1.0)
        fast = ssim_changed(image, changed, data_range=1.0, prepare=mapping.to_unit)
        assert fast == pytest.approx(reference, abs=1e-6)
        assert fast < 1.0
        assert changed_box(image, image) is None
        assert ssim_changed(image, image, data_range=1.0, prepare=mapping.to_unit) == 1.0


@pytest.mark.parametrize("shape", [(40, 30), (12, 15, 5), (9, 1, 11)])
def test_ssim_changed_equals_ssim_for_2d_small_and_singleton_axes(shape) -> None:
    from umed.metrics import ssim_changed

    rng = np.random.default_rng(1)
    ref = rng.random(shape).astype(np.float32)
    test = ref.copy()
    test[tuple(slice(n // 3, n // 3 + 2) for n in shape)] += 0.05
    assert ssim_changed(ref, test, data_range=1.0) == pytest.approx(ssim(ref, test, data_range=1.0), abs=1e-6)
    assert ssim_changed(ref.astype(np.float64), test, data_range=1.0) == pytest.approx(
        ssim(ref.astype(np.float64), test, data_range=1.0), abs=1e-12
    )


@pytest.mark.filterwarnings("ignore::FutureWarning")  # raised inside MONAI 1.6
@pytest.mark.parametrize("ndim", [2, 3])
def test_hd95_matches_monai(ndim: int) -> None:
    from scipy import ndimage

    rng = np.random.default_rng(ndim)
    shape = (4,) + (12,) * ndim
    pred = ndimage.binary_dilation(rng.random(shape) > 0.97, iterations=1)
    target = ndimage.binary_dilation(rng.random(shape) > 0.97, iterations=1)
    pred[:, 0], target[:, -1] = True, True  # structure touching the border
    spacing = [(1.0, 2.0, 0.5)[:ndim]] * shape[0]
    one_hot = lambda m: torch.cat([~m, m], 1).float()  # noqa: E731
    p, t = torch.from_numpy(pred)[:, None], torch.from_numpy(target)[:, None]
    expected = compute_hausdorff_distance(one_hot(p), one_hot(t), percentile=95, spacing=spacing).reshape(-1).numpy()
    np.testing.assert_allclose(hd95_per_image(pred, target, spacing=spacing), expected, rtol=1e-6)


def test_hd95_penalises_missed_images_and_skips_empty_targets() -> None:
    pred = np.zeros((3, 20, 20), bool)
    target = np.zeros((3, 20, 20), bool)
    pred[0, 4:10, 4:10], target[0, 5:12, 4:9] = True, True
    target[1, 2:5, 2:5] = True  # missed: diagonal
    pred[2, 1:3, 1:3] = True  # nothing to find
    hd = hd95_per_image(pred, target, spacing=[(1.0, 2.0)] * 3)
    assert np.isfinite(hd[0]) and hd[1] == pytest.approx(np.hypot(20 * 1.0, 20 * 2.0)) and np.isnan(hd[2])


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("shape", [(7,), (6, 5), (5, 6, 7), (3, 4, 5, 6)])
def test_bounding_box_is_the_box_of_the_true_voxels(shape, order) -> None:
    from umed.metrics import bounding_box

    rng = np.random.default_rng(len(shape))
    for _ in range(20):
        mask = np.asarray(rng.random(shape) > 0.93, order=order)
        hits = np.argwhere(mask)
        expected = (
            None if not len(hits) else tuple(slice(int(lo), int(hi) + 1) for lo, hi in zip(hits.min(0), hits.max(0)))
        )
        assert bounding_box(mask) == expected
