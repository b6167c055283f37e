"""The opt-in expectation over the attacker's transformations (``eot``) of the UMed protector."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from umed.errors import ConfigError
from umed.protectors import make_protector
from umed.protectors.base import Budget, SliceBatch
from umed.protectors.eot import EOT_NAMES, check_eot, draw_transform

BUDGET = Budget(eps_contour=8 / 255, eps_texture=6 / 255, band_width=2)


def phantom(count: int = 4, shape=(40, 48)) -> SliceBatch:
    """Bright noisy disks on a darker noisy background."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    structures = np.stack([(yy - 18 - 2 * i) ** 2 + (xx - 22 - 3 * i) ** 2 <= (7 + 2 * i) ** 2 for i in range(count)])
    images = 0.3 + 0.35 * structures + 0.04 * rng.standard_normal((count, *shape))
    return SliceBatch(images.astype(np.float32), structures, [f"case/{i}" for i in range(count)])


def _checker(shape=(2, 1, 32, 32)) -> torch.Tensor:
    rows, cols = torch.meshgrid(torch.arange(shape[2]), torch.arange(shape[3]), indexing="ij")
    return ((rows + cols) % 2 * 2 - 1).to(torch.float32).expand(shape).clone()


@pytest.mark.parametrize("name", EOT_NAMES)
def test_each_transform_keeps_shapes_and_passes_gradients(name):
    generator = torch.Generator().manual_seed(0)
    x = (0.5 + 0.1 * _checker()).requires_grad_(True)
    y = torch.zeros_like(x)
    y[:, :, 8:20, 8:20] = 1
    # draw until this transform comes up (uniform over "none" + the list: a few draws)
    drawn, transform = draw_transform([name], generator)
    while drawn != name:
        drawn, transform = draw_transform([name], generator)
    out, y_out = transform(x, y, generator)
    assert out.shape == x.shape and y_out.shape == y.shape
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["gaussian", "downsample"])
def test_low_pass_transforms_remove_a_period_2_pattern(name):
    """The reason EOT exists: these transforms erase the period-2 checkerboard that protects a plain victim."""
    generator = torch.Generator().manual_seed(1)
    x = 0.5 + 0.1 * _checker()
    _, transform = draw_transform([name], generator)
    while transform is None:
        _, transform = draw_transform([name], generator)
    out, _ = transform(x, torch.zeros_like(x), generator)
    inner = (out - 0.5)[..., 4:-4, 4:-4]
    assert float(inner.abs().max()) < 0.1 * 0.35  # at most 35% of the amplitude survives (0 after downsample)


def test_median_removes_isolated_voxels_but_keeps_a_perfect_checkerboard():
    """A 3x3 median drops sparse spikes; a pure checkerboard survives it (5 of 9 window voxels share the centre's
    phase), which is why the median defense acts on a pattern only together with the image's own texture."""
    generator = torch.Generator().manual_seed(2)
    _, transform = draw_transform(["median"], generator)
    while transform is None:
        _, transform = draw_transform(["median"], generator)
    spikes = torch.full((1, 1, 16, 16), 0.5)
    spikes[0, 0, 4, 4] = spikes[0, 0, 9, 11] = 1.0
    out, _ = transform(spikes, torch.zeros_like(spikes), generator)
    assert torch.allclose(out, torch.full_like(out, 0.5))
    checker = 0.5 + 0.1 * _checker((1, 1, 16, 16))
    out, _ = transform(checker, torch.zeros_like(checker), generator)
    assert torch.allclose(out[..., 1:-1, 1:-1], checker[..., 1:-1, 1:-1])


def test_augment_gradient_stays_finite_where_gamma_meets_zero():
    """Images with exact zeros (background) under many augmentation draws: the gamma's infinite derivative at 0
    must not reach the generators (it once made every UMed weight NaN on BraTS)."""
    generator = torch.Generator().manual_seed(4)
    for _ in range(40):
        x = torch.zeros(4, 1, 24, 24)
        x[:, :, 6:18, 6:18] = 0.6
        x = (x + 0.05 * _checker((4, 1, 24, 24)).clamp(min=0)).requires_grad_(True)
        _, transform = draw_transform(["augment"], generator)
        if transform is None:
            continue
        out, _ = transform(x, torch.zeros_like(x), generator)
        (out**2).sum().backward()
        assert torch.isfinite(x.grad).all()


def test_check_eot_errors_name_the_setting():
    assert check_eot("umed", ["Gaussian", "augment"]) == ["gaussian", "augment"]
    with pytest.raises(ConfigError, match="eot"):
        check_eot("umed", ["blur"])
    with pytest.raises(ConfigError, match="eot"):
        check_eot("umed", ["median", "median"])
    with pytest.raises(ConfigError, match="eot"):
        make_protector("umed", BUDGET, eot="gaussian")


def test_eot_off_by_default_and_bytes_unchanged(tiny_fit_settings):
    """Default settings: no EOT, and ``eot: []`` gives the same perturbation bytes as not setting it."""
    batch = phantom()
    settings = tiny_fit_settings["umed"]
    default = make_protector("umed", BUDGET, seed=3, **settings)
    assert default.settings["eot"] == []
    explicit = make_protector("umed", BUDGET, seed=3, eot=[], **settings)
    log = default.fit(batch)
    explicit.fit(batch)
    assert "eot_draws" not in log
    assert default.perturb(batch).tobytes() == explicit.perturb(batch).tobytes()


def test_eot_fit_is_deterministic_changes_training_and_keeps_the_budget(tiny_fit_settings):
    batch = phantom()
    settings = {**tiny_fit_settings["umed"], "steps": 4}
    runs = []
    for _ in range(2):
        protector = make_protector("umed", BUDGET, seed=3, eot=list(EOT_NAMES), **settings)
        log = protector.fit(batch)
        runs.append((protector.perturb(batch), log))
    (delta, log), (again, _) = runs
    assert np.isfinite(delta).all()
    assert delta.tobytes() == again.tobytes()
    assert sum(log["eot_draws"].values()) == 4 + 4 // settings["surrogate_every"]
    plain = make_protector("umed", BUDGET, seed=3, **settings)
    plain.fit(batch)
    assert plain.perturb(batch).tobytes() != delta.tobytes()
    from umed import regions

    support = regions.support(batch.structures, BUDGET.band_width, batch=True)
    assert np.all(delta[~support] == 0)
    assert np.all(np.abs(delta) <= np.float32(BUDGET.eps_max) * batch.eps_scale[:, None, None])


def test_em_with_eot_is_repeatable_and_differs_from_plain_em() -> None:
    import numpy as np

    from umed.protectors import Budget, SliceBatch
    from umed.protectors.em import EMProtector

    fg = np.zeros((3, 32, 32), dtype=bool)
    fg[:, 8:20, 10:22] = True
    batch = SliceBatch(np.random.default_rng(0).random((3, 32, 32)).astype(np.float32), fg, ["c/0", "c/1", "c/2"])
    small = dict(train_steps=2, batch_size=2, crop=16, steps=2, train_noise_steps=1)
    deltas = {}
    for eot in ([], ["gaussian", "augment"]):
        protector = EMProtector(Budget(), seed=0, eot=eot, **small)
        protector.fit(batch)
        deltas[len(eot)] = protector.perturb(batch)
        np.testing.assert_array_equal(deltas[len(eot)], protector.perturb(batch))
    assert not np.array_equal(deltas[0], deltas[2])


def test_em_refuses_an_unknown_eot_transform() -> None:
    import pytest

    from umed.errors import ConfigError
    from umed.protectors import Budget
    from umed.protectors.em import EMProtector

    with pytest.raises(ConfigError, match="eot"):
        EMProtector(Budget(), seed=0, eot=["sharpen"])
