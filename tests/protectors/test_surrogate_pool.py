"""umed.protectors.surrogate_pool: surrogates of staggered ages, and the UMed fit against them."""

from __future__ import annotations

import numpy as np
import torch

from umed.protectors import Budget, SliceBatch, UMedProtector
from umed.protectors.surrogate import segmentation_loss
from umed.protectors.surrogate_pool import SurrogatePool


def _batch() -> SliceBatch:
    fg = np.zeros((4, 32, 32), dtype=bool)
    fg[:, 8:20, 10:22] = True
    images = np.random.default_rng(0).random((4, 32, 32)).astype(np.float32)
    return SliceBatch(images, fg, [f"case/{i}" for i in range(4)])


def test_reinitialisations_are_spread_over_the_period() -> None:
    pool = SurrogatePool(seed=0, method="umed", size=3, reinit_every=6, lr=1e-3)
    assert [pool.offset(i) for i in range(3)] == [0, 2, 4]
    first = [p.clone() for p in pool.members[1][0].parameters()]
    due = [step for step in range(1, 13) if pool.advance(step, steps=12)]
    assert due == [2, 4, 6, 8, 10]  # each member every 6 steps, in turn; never after the last step
    assert pool.generations == [1, 2, 2] and pool.reinits == 5
    assert any(not torch.equal(a, b) for a, b in zip(first, pool.members[1][0].parameters()))


def test_members_differ_and_only_the_input_gets_gradients() -> None:
    pool = SurrogatePool(seed=0, method="umed", size=2, reinit_every=0, lr=1e-3)
    weights = [next(model.parameters()) for model, _ in pool.members]
    assert not torch.equal(weights[0], weights[1])
    x = torch.rand(2, 1, 16, 16, requires_grad=True)
    y = (torch.rand(2, 1, 16, 16) > 0.5).float()
    pool.loss(segmentation_loss(), x, y).backward()
    assert x.grad is not None and all(p.grad is None for model, _ in pool.members for p in model.parameters())
    before = [p.clone() for p in pool.members[0][0].parameters()]
    pool.step(segmentation_loss(), x.detach(), y)
    assert any(not torch.equal(a, b) for a, b in zip(before, pool.members[0][0].parameters()))
    assert not pool.advance(5, steps=10)  # reinit_every 0: never


def test_umed_fit_against_a_pool_is_seeded() -> None:
    settings = dict(steps=6, crop=16, base_channels=4, surrogates=2, surrogate_reinit_every=4, saturation=0.0)
    settings["pattern_init"] = "none"
    runs = []
    for _ in range(2):
        protector = UMedProtector(Budget(4 / 255, 8 / 255, 3), seed=0, **settings)
        log = protector.fit(_batch())
        runs.append(protector.perturb(_batch()))
    assert log["surrogate_reinits"] == 2  # member 0 at step 4, member 1 at step 2
    np.testing.assert_array_equal(runs[0], runs[1])
    assert np.abs(runs[0]).max() > 0
