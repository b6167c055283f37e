"""umed.audit.floor: the threshold floor finds the cut and its polarity, and matches a brute-force search."""

from __future__ import annotations

import numpy as np
import pytest

from umed.audit.floor import threshold_floor
from umed.metrics import dice


def test_threshold_floor_finds_the_cut_and_polarity() -> None:
    rng = np.random.default_rng(4)
    train_y = rng.random((4, 16, 16)) > 0.7
    test_y = rng.random((2, 16, 16)) > 0.7
    bright = lambda y: np.where(y, 0.8, 0.2) + rng.normal(0, 0.02, y.shape)  # noqa: E731
    threshold, polarity, score, train_score = threshold_floor(bright(train_y), train_y, bright(test_y), test_y)
    assert polarity == "above" and 0.3 < threshold < 0.7 and score == 1.0 and train_score == 1.0
    result = threshold_floor(1 - bright(train_y), train_y, 1 - bright(test_y), test_y)
    assert result.polarity == "below" and result.dice == 1.0


def test_threshold_floor_matches_brute_force() -> None:
    rng = np.random.default_rng(5)
    x = rng.random((3, 12, 12))
    y = x + rng.normal(0, 0.3, x.shape) > 0.7
    xt = rng.random((2, 12, 12))
    yt = xt + rng.normal(0, 0.3, xt.shape) > 0.7
    floor = threshold_floor(list(x), list(y), xt, yt, bins=256)
    edges = np.linspace(x.min(), x.max(), 257)[1:-1]
    best = max(max(dice(x >= t, y), dice(x < t, y)) for t in edges)
    assert floor.train_dice == pytest.approx(best)
    rule = xt >= floor.threshold if floor.polarity == "above" else xt < floor.threshold
    assert floor.dice == pytest.approx(dice(rule, yt))
