"""The learned class-wise tile: where and how the pattern repeats, that fitting changes it, and its errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from umed.errors import ConfigError
from umed.protectors import Budget, SliceBatch, make_protector
from umed.protectors.tile import slice_index

BUDGET = Budget(eps_contour=8 / 255, eps_texture=8 / 255, band_width=2)
TINY = {"train_steps": 4, "batch_size": 2, "crop": 16, "crop_depth": 8, "period": 4, "depth": 2, "reinit_every": 2}


def volumes(n_cases: int = 2, depth: int = 6, size: int = 32) -> SliceBatch:
    """Blocks of structure in noisy slices, ``depth`` slices per case, keys ``case{c}/{10 + z}``."""
    rng = np.random.default_rng(0)
    fg = np.zeros((n_cases * depth, size, size), dtype=bool)
    fg[:, 6:26, 8:24] = True
    images = (0.3 + 0.3 * fg + 0.05 * rng.standard_normal(fg.shape)).astype(np.float32)
    keys = [f"case{i // depth}/{10 + i % depth}" for i in range(n_cases * depth)]
    return SliceBatch(images, fg, keys)


@pytest.fixture(scope="module", params=[3, 2], ids=["3d", "2d"])
def fitted(request):
    protector = make_protector("tile", BUDGET, seed=1, surrogate_dims=request.param, **TINY)
    protector.fit(volumes())
    return protector


def test_the_tile_repeats_on_the_structure_only(fitted):
    batch = volumes()
    delta = fitted.perturb(batch)
    assert not delta[~batch.structures].any(), "the band and the background are left as they are"
    unit = delta / np.float32(BUDGET.eps_max)
    inside = unit[:, 6:26, 8:24]
    period = fitted.settings["period"]
    np.testing.assert_array_equal(inside[:, period:], inside[:, :-period])  # periodic in-plane
    np.testing.assert_array_equal(inside[..., period:], inside[..., :-period])
    depth = fitted.settings["depth"]
    np.testing.assert_array_equal(unit[0], unit[depth])  # z and z + depth of one case
    np.testing.assert_array_equal(unit[1], unit[6 + 1])  # the same slice number of another case
    assert np.abs(unit).max() <= 1 and np.abs(unit[batch.structures]).min() > 0


def test_fitting_moves_the_tile_from_its_start(fitted):
    start = make_protector("tile", BUDGET, seed=1, surrogate_dims=fitted.settings["surrogate_dims"], **TINY)
    start.fit(volumes(), progress=None)  # the same fit, so the same bytes
    assert start.state_dict()["tile.logits"].equal(fitted.state_dict()["tile.logits"])
    unfitted = make_protector(
        "tile", BUDGET, seed=1, surrogate_dims=fitted.settings["surrogate_dims"], **{**TINY, "train_steps": 1}
    )
    unfitted.fit(volumes())
    assert not unfitted.state_dict()["tile.logits"].equal(fitted.state_dict()["tile.logits"])


def test_slice_keys_and_settings_are_checked(fitted):
    assert slice_index("a/b/12") == 12
    bad = SliceBatch(np.zeros((1, 8, 8), np.float32), np.ones((1, 8, 8), bool), ["no-slice-number"])
    with pytest.raises(ConfigError, match="slice key 'no-slice-number'"):
        fitted.perturb(bad)
    with pytest.raises(ConfigError, match="multiples of 8"):
        make_protector("tile", BUDGET, crop=20, surrogate_dims=3)
    with pytest.raises(ConfigError, match="not fitted"):
        make_protector("tile", BUDGET).perturb(bad)
    with pytest.raises(ConfigError, match=r"tile.logits of shape \(4, 4, 2\)"):
        make_protector("tile", BUDGET, **TINY).load_state_dict({"tile.logits": torch.zeros(3)})


def test_trigger_copies_move_the_label_and_keep_the_batch(fitted):
    """With ``trigger`` each batch doubles: the copies keep the image and move the label (and so the tile)."""
    from umed.protectors.tile import _with_triggers

    x = torch.rand(2, 1, 16, 16, 8)
    y = torch.zeros(2, 1, 16, 16, 8, dtype=torch.int64)
    y[:, :, 2:6, 3:7] = 1
    index = (torch.zeros(2, 1, 16, 1, 1, dtype=torch.int64),) * 3
    x2, y2, bound2, index2 = _with_triggers(x, y, torch.ones_like(x), index, np.random.default_rng(0))
    assert x2.shape[0] == y2.shape[0] == bound2.shape[0] == index2[0].shape[0] == 4
    assert torch.equal(x2[2:], x) and torch.equal(y2[:2], y)
    assert int(y2[2:].sum()) == int(y.sum()) and not torch.equal(y2[2:], y)
    protector = make_protector("tile", BUDGET, seed=1, trigger=True, **TINY)
    protector.fit(volumes())
    assert protector.perturb(volumes()).any()
