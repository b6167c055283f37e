"""The victims' training loop: reported Dice = recomputed Dice, seeding, patches, validation scoring."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from umed.audit.records import VictimRun
from umed.audit.selection import ema, nnunet_epoch
from umed.audit.training import TrainSettings, train_victim
from umed.errors import GeometryError
from umed.metrics import dice, dice_per_label


def _discs(n: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Bright discs (labels 1 and 2 on the two halves) on a noisy background: ``(n, size, size)``."""
    yy, xx = np.mgrid[:size, :size]
    x = (0.3 * rng.random((n, size, size))).astype(np.float32)
    y = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        cy, cx = rng.integers(size // 4, 3 * size // 4, 2)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < (size // 6) ** 2
        y[i][disc] = 1
        y[i][disc & (xx > cx)] = 2
        x[i][disc] += 0.5
    return x, y


def test_train_victim_reports_what_its_predictions_score_and_keeps_global_rng() -> None:
    rng = np.random.default_rng(0)
    train_x, train_y = _discs(12, 32, rng)
    test_x, test_y = _discs(6, 32, rng)
    torch_state, np_state = torch.random.get_rng_state(), np.random.get_state()[1].copy()
    calls = []
    run = train_victim(
        train_x,
        train_y,
        test_x,
        test_y,
        TrainSettings(victim="unet", epochs=2, batch_size=6, seed=3),
        progress=lambda d, c, t: calls.append((d, c, t)),
    )
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], np_state)
    assert run.predictions.dtype == np.uint8 and run.predictions.shape == test_x.shape
    assert run.last_dice == dice(run.predictions, test_y > 0)
    assert len(run.train_loss) == len(run.test_dice) == len(run.test_hd95) == 2
    assert run.best_dice == max(run.test_dice) and run.test_dice[run.best_epoch - 1] == run.best_dice
    assert run.dice_per_label == dice_per_label(run.predictions, test_y) and set(run.dice_per_label) == {1, 2}
    assert calls[0] == ("unet none", 0, 2) and calls[-1] == ("unet none", 2, 2)
    assert run.to_dict()["last_dice"] == run.last_dice and "predictions" not in run.to_dict()

    again = train_victim(train_x, train_y, test_x, test_y, TrainSettings(victim="unet", epochs=2, batch_size=6, seed=3))
    assert again.train_loss == run.train_loss and np.array_equal(again.predictions, run.predictions)


def test_train_victim_patch_mode_for_unet3d() -> None:
    rng = np.random.default_rng(1)
    x = rng.random((2, 24, 16, 16)).astype(np.float32)
    y = (x > 0.8).astype(np.uint8)
    run = train_victim(
        x,
        y,
        x[:1],
        y[:1],
        TrainSettings(victim="unet3d", epochs=1, batch_size=2, seed=0, patch_size=(16, 16, 16), patches_per_epoch=2),
        test_spacing=[(1.0, 1.0, 2.0)],
    )
    assert run.predictions.shape == (1, 24, 16, 16) and run.n_train == 2
    with pytest.raises(GeometryError, match="at least 16"):
        train_victim(x, y, x, y, TrainSettings(victim="unet3d", epochs=1, batch_size=1, seed=0, patch_size=(8, 8, 8)))
    with pytest.raises(GeometryError, match="divisible by 8"):
        train_victim(x, y, x[:, :12], y[:, :12], TrainSettings(victim="unet3d", epochs=1, batch_size=1, seed=0))


def test_train_victim_refuses_bad_shapes() -> None:
    x = np.zeros((2, 30, 32), np.float32)
    with pytest.raises(GeometryError, match="divisible by 8"):
        train_victim(x, x, x, x, TrainSettings(victim="unet", epochs=1, batch_size=1, seed=0))
    with pytest.raises(GeometryError, match="differ in shape"):
        train_victim(x, x[:1], x, x, TrainSettings(victim="unet", epochs=1, batch_size=1, seed=0))


def test_validation_dice_is_scored_every_epoch_and_selects_nnunets_epoch() -> None:
    rng = np.random.default_rng(2)
    train_x, train_y = _discs(10, 32, rng)
    val_x, val_y = _discs(4, 32, rng)
    test_x, test_y = _discs(4, 32, rng)
    run = train_victim(
        train_x,
        train_y,
        test_x,
        test_y,
        TrainSettings(victim="unet", epochs=3, batch_size=5, seed=1),
        val_x=val_x,
        val_y=val_y,
    )
    assert len(run.val_dice) == 3 and all(0 <= v <= 1 for v in run.val_dice)
    epoch = nnunet_epoch(run.val_dice)
    assert run.epoch("nnunet") == epoch and run.nnunet_dice == run.test_dice[epoch - 1]
    assert run.epoch("last") == 3 and run.dice("best") == run.best_dice
    doc = run.to_dict()
    assert doc["nnunet_epoch"] == epoch and doc["val_dice_ema"] == pytest.approx(ema(run.val_dice))
    assert doc["selection"]["last"]["dice"] == run.last_dice
    back = VictimRun.from_dict(doc, run.predictions)
    assert back.val_dice == pytest.approx(run.val_dice) and back.epoch("nnunet") == epoch

    plain = train_victim(train_x, train_y, test_x, test_y, TrainSettings(victim="unet", epochs=3, batch_size=5, seed=1))
    assert plain.train_loss == run.train_loss  # scoring the validation cases changes nothing in training
    assert plain.val_dice == [] and plain.epoch("nnunet") is None and np.isnan(plain.nnunet_dice)
