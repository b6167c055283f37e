"""Selection rules: nnU-Net's EMA and checkpoint_best rule, the three rules, the validation split."""

from __future__ import annotations

import math

import pytest

from umed.audit.selection import RULES, ema, nnunet_epoch, select_epochs, validation_split
from umed.errors import ConfigError


def test_ema_is_nnunets_update() -> None:
    values = [0.2, 0.6, 0.1, 0.9]
    expected = [0.2]
    for v in values[1:]:
        expected.append(0.9 * expected[-1] + 0.1 * v)
    assert ema(values) == pytest.approx(expected)
    assert ema([0.5, math.nan, 0.7]) == pytest.approx([0.5, 0.5, 0.52])


def test_nnunet_keeps_the_last_new_maximum_of_the_ema() -> None:
    # a spike at epoch 2 moves the EMA less than a steady level of 0.3: nnU-Net does not pick the raw maximum
    val = [0.1, 0.9, 0.0, 0.0, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3]
    assert ema(val)[1] == pytest.approx(0.18) and ema(val)[-1] > 0.18
    assert nnunet_epoch(val) == 12
    assert nnunet_epoch([0.1, 0.9, 0.0, 0.0]) == 2
    assert nnunet_epoch([0.1, 0.2, 0.3]) == 3
    assert nnunet_epoch([0.5, 0.5]) == 1  # a strict ">": ties keep the earlier checkpoint
    assert nnunet_epoch([]) is None and nnunet_epoch([math.nan]) is None


def test_select_epochs_gives_every_rule() -> None:
    picks = select_epochs([0.1, 0.5, 0.4], [0.2, 0.1, 0.9])
    assert set(picks) == set(RULES) and picks == {"best": 2, "last": 3, "nnunet": 3}  # EMA 0.2, 0.19, 0.261
    assert select_epochs([0.3])["nnunet"] is None
    with pytest.raises(ConfigError):
        select_epochs([])


def test_validation_split_is_seeded_disjoint_and_at_least_one_case() -> None:
    ids = [f"c{i}" for i in range(10)]
    fit, val = validation_split(ids, seed=0)
    assert len(val) == 2 and sorted(fit + val) == sorted(ids) and not set(fit) & set(val)
    assert validation_split(list(reversed(ids)), seed=0) == (fit, val)
    assert validation_split(ids, seed=1) != (fit, val)
    assert len(validation_split(ids[:2], seed=0)[1]) == 1 and validation_split(ids[:1], seed=0) == (["c0"], [])
    with pytest.raises(ConfigError):
        validation_split(ids, seed=0, fraction=1.5)
