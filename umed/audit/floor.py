"""The threshold floor: the Dice of the best single intensity threshold, fitted on training voxels and scored on test
voxels, the baseline a victim trained on protected data is measured against.

Example:
    >>> import numpy as np
    >>> y = np.zeros((8, 8), bool); y[2:5, 2:5] = True
    >>> floor = threshold_floor(np.where(y, 0.8, 0.2), y, np.where(y, 0.7, 0.1), y)
    >>> floor.polarity, floor.dice, floor.train_dice
    ('above', 1.0, 1.0)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

import numpy as np

from umed.errors import ConfigError, GeometryError
from umed.metrics import dice

__all__ = ["ThresholdFloor", "threshold_floor"]


class ThresholdFloor(NamedTuple):
    """Result of :func:`threshold_floor` (unpacks as ``threshold, polarity, dice``).

    Attributes:
        threshold: intensity cut in the images' units.
        polarity: ``"above"`` (structure is ``x >= threshold``) or ``"below"`` (structure is ``x < threshold``).
        dice: Dice of that rule on the test images, all voxels jointly.
        train_dice: Dice of that rule on the images it was fitted on.
    """

    threshold: float
    polarity: Literal["above", "below"]
    dice: float
    train_dice: float


def _flat(arrays: np.ndarray | Sequence[np.ndarray], dtype: type) -> np.ndarray:
    if isinstance(arrays, np.ndarray):
        return arrays.ravel().astype(dtype, copy=False)
    parts: list[np.ndarray] = [np.asarray(a).ravel().astype(dtype, copy=False) for a in arrays]
    return np.concatenate(parts) if parts else np.zeros(0, dtype)


def _plateau_middle(scores: np.ndarray) -> int:
    """Index of the middle of the first run of maximal scores (a cut in the middle of a gap generalises best)."""
    best = np.flatnonzero(scores >= scores.max() - 1e-12)
    end = 0
    while end + 1 < len(best) and best[end + 1] == best[end] + 1:
        end += 1
    return int(best[end // 2])


def threshold_floor(
    train_images: np.ndarray | Sequence[np.ndarray],
    train_masks: np.ndarray | Sequence[np.ndarray],
    test_images: np.ndarray | Sequence[np.ndarray],
    test_masks: np.ndarray | Sequence[np.ndarray],
    *,
    bins: int = 4096,
) -> ThresholdFloor:
    """The best single intensity threshold, fitted on training voxels and scored on test voxels.

    This is the Dice a trivial segmenter reaches: if a victim trained on protected data still scores at or above it,
    the protection hid nothing a threshold would not find. The threshold and its polarity maximise the Dice over all
    training voxels jointly (candidate cuts at ``bins`` equal steps between the training minimum and maximum, both
    polarities; among equally good cuts, the middle of the first such range); the same rule is then scored over all
    test voxels jointly. In an audit the training images are the
    protected ones and the test images clean, as a victim would see them.

    Args:
        train_images: one array or a sequence of arrays (any shapes), float intensities.
        train_masks: matching binary masks (nonzero = structure), same shapes.
        test_images: arrays to score on.
        test_masks: their masks.
        bins: number of candidate thresholds.

    Returns:
        :class:`ThresholdFloor` ``(threshold, polarity, dice, train_dice)``.

    Raises:
        GeometryError: an image and its mask differ in size. ConfigError: no training voxels, or ``bins < 2``.
    """
    if bins < 2:
        raise ConfigError(f"bins: need at least 2 candidate thresholds (got {bins})")
    x = _flat(train_images, np.float64)
    y = _flat(train_masks, bool)
    xt = _flat(test_images, np.float64)
    yt = _flat(test_masks, bool)
    if x.shape != y.shape or xt.shape != yt.shape:
        raise GeometryError(
            f"threshold_floor: images and masks differ in voxel count "
            f"(train {x.size} vs {y.size}, test {xt.size} vs {yt.size})"
        )
    if x.size == 0:
        raise ConfigError("threshold_floor: no training voxels")
    lo, hi = float(x.min()), float(x.max())
    if hi <= lo:  # constant image: the only rules are "all" or "nothing"
        hi = lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    all_hist, _ = np.histogram(x, bins=edges)
    fg_hist, _ = np.histogram(x[y], bins=edges)
    n_fg = int(y.sum())
    # cut after bin k (k = 0..bins-1 -> threshold edges[k+1]); "below" = bins 0..k, "above" = bins k+1..end
    below_all = np.cumsum(all_hist)[:-1].astype(np.float64)
    below_fg = np.cumsum(fg_hist)[:-1].astype(np.float64)
    above_all = all_hist.sum() - below_all
    above_fg = n_fg - below_fg
    thresholds = edges[1:-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        dice_below = np.where(below_all + n_fg > 0, 2 * below_fg / (below_all + n_fg), 1.0)
        dice_above = np.where(above_all + n_fg > 0, 2 * above_fg / (above_all + n_fg), 1.0)
    k_below, k_above = _plateau_middle(dice_below), _plateau_middle(dice_above)
    polarity: Literal["above", "below"]
    if dice_above[k_above] >= dice_below[k_below]:
        threshold, polarity, train_dice = float(thresholds[k_above]), "above", float(dice_above[k_above])
    else:
        threshold, polarity, train_dice = float(thresholds[k_below]), "below", float(dice_below[k_below])
    # histogram bins are [a, b): a value equal to the cut counts as "above", in training and in the test rule
    test_pred = xt >= threshold if polarity == "above" else xt < threshold
    return ThresholdFloor(threshold, polarity, dice(test_pred, yt), train_dice)
