"""nnU-Net v2 augmentation (the ``augment`` defense): shapes, labels, seeding, and the transforms it is made of."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from umed.audit.augment import _bg_contrast, _gamma, nnunet_augment
from umed.audit.defenses import get_defense


@pytest.mark.parametrize("spatial", [(32, 32), (16, 16, 16)])
def test_keeps_shapes_binary_labels_inputs_and_is_seeded(spatial: tuple[int, ...]) -> None:
    x = torch.rand(8, 1, *spatial)
    yy = torch.zeros(8, 1, *spatial)
    yy[(slice(None), slice(None)) + tuple(slice(n // 4, 3 * n // 4) for n in spatial)] = 1
    before = x.clone()
    a = nnunet_augment(x, yy, generator=torch.Generator().manual_seed(1))
    b = nnunet_augment(x, yy, generator=torch.Generator().manual_seed(1))
    assert a[0].shape == x.shape and a[1].shape == yy.shape and a[0].dtype == x.dtype and a[1].dtype == yy.dtype
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert torch.equal(x, before)
    assert not torch.equal(a[0], x)
    assert set(torch.unique(a[1]).tolist()) <= {0.0, 1.0}


def test_spatial_transforms_move_labels_with_the_image() -> None:
    """The image is its own label (a bright square): after any draw, the label still marks the bright voxels."""
    x = torch.zeros(64, 1, 48, 48)
    x[:, :, 16:32, 12:30] = 1.0
    y = (x > 0.5).float()
    out, lab = nnunet_augment(x, y, generator=torch.Generator().manual_seed(3))
    moved = [i for i in range(64) if not torch.equal(lab[i], y[i])]
    assert moved  # rotations, scalings and mirrors happened
    for i in range(64):
        inside = out[i][lab[i] > 0].mean()
        outside = out[i][lab[i] == 0].mean()
        assert float(inside) > float(outside) + 0.3


def test_probabilities_follow_nnunet() -> None:
    """Over many draws the image is left unchanged (but for mirroring) about as often as nnU-Net's probabilities give:
    P(no rotation, no scaling, no intensity transform) = 0.8 * 0.8 * 0.9 * (1 - 0.2 * 0.5) * 0.85 * 0.85 *
    (1 - 0.25 * 0.5) * 0.9 * 0.7 ~= 0.183."""
    n = 600
    x = torch.rand(n, 1, 16, 16)
    y = torch.zeros(n, 1, 16, 16)
    out, _ = nnunet_augment(x, y, generator=torch.Generator().manual_seed(0))
    same = 0
    for i in range(n):
        candidates = [x[i], x[i].flip(-1), x[i].flip(-2), x[i].flip(-1).flip(-2)]
        same += any(torch.allclose(out[i], c, atol=1e-5) for c in candidates)
    assert abs(same / n - 0.183) < 0.05


def test_bg_contrast_and_gamma_keep_statistics() -> None:
    g = torch.Generator().manual_seed(0)
    draws = np.array([_bg_contrast(g, 0.75, 1.25) for _ in range(2000)])
    assert draws.min() >= 0.75 and draws.max() <= 1.25 and abs((draws < 1).mean() - 0.5) < 0.05
    z = torch.randn(1, 1, 32, 32)
    for invert in (False, True):
        out = _gamma(z, 1.4, invert)
        assert abs(float(out.mean() - z.mean())) < 1e-4 and abs(float(out.std() - z.std())) < 1e-4
        assert not torch.allclose(out, z)


def test_augment_defense_uses_it() -> None:
    x, y = torch.rand(2, 1, 16, 16), torch.zeros(2, 1, 16, 16)
    d = get_defense("augment")
    a = d.on_batch(x, y, model=None, loss_fn=None, generator=torch.Generator().manual_seed(5))
    b = nnunet_augment(x, y, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a[0], b[0]) and "nnU-Net v2 2.8.1" in d.summary
