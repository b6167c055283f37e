"""Model selection: which epoch's checkpoint a data user keeps. The audit reports the clean-test Dice under three rules.

===========  ===========================================================================================================
rule         the epoch kept
===========  ===========================================================================================================
``best``     the epoch with the highest clean-test Dice: an *oracle* (it looks at the test set), the attacker's best
             case and what early stopping at the ideal moment gives (Sandoval-Segura et al., arXiv 2204.08615)
``last``     the final epoch: what nnU-Net validates and what a pipeline without early stopping ships (APBench)
``nnunet``   nnU-Net v2's ``checkpoint_best``: the epoch at which an exponential moving average of the validation
             pseudo-Dice, ``ema = 0.9 * ema + 0.1 * dice`` (the first epoch sets ``ema = dice``), reaches a new maximum;
             the validation split is drawn from the (here protected) training cases (:func:`validation_split`), so the
             rule never sees clean test data
===========  ===========================================================================================================

nnU-Net computes its pseudo-Dice on validation *patches* (foreground-oversampled) of the held-out fold; the audit
computes it on the validation cases' slices (volumes for ``unet3d``) exactly as it computes the test Dice (all
samples jointly), which is the stated deviation. The EMA and the "new maximum" update are nnU-Net's
(``nnUNetTrainer.on_epoch_end``: ``ema_fg_dice`` and ``_best_ema``, a strict ``>``).

The validation split lives here and only here: a fixed fraction of the training cases (nnU-Net's 5-fold
cross-validation holds out one fifth), at least one case, drawn with the audit seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from umed.errors import ConfigError

__all__ = ["RULES", "VALIDATION_FRACTION", "ema", "nnunet_epoch", "select_epochs", "validation_split"]

#: The three selection rules, in the order reports show them.
RULES = ("best", "last", "nnunet")

#: Fraction of the training cases held out as nnU-Net's validation fold (one of 5 folds).
VALIDATION_FRACTION = 0.2

_EMA_KEEP = 0.9  # nnU-Net: ema = 0.9 * ema + 0.1 * dice


def validation_split(
    train_ids: Sequence[str], *, seed: int, fraction: float = VALIDATION_FRACTION
) -> tuple[list[str], list[str]]:
    """Split the training cases into the cases a victim fits on and nnU-Net's validation fold.

    Args:
        train_ids: the audit's training case ids (never test cases).
        seed: the audit seed (the draw is ``numpy.random.default_rng([seed, 5])``, independent of the test split).
        fraction: share of the training cases held out (rounded, at least 1).

    Returns:
        ``(fit_ids, validation_ids)``, both sorted; ``validation_ids`` is empty when fewer than 2 training cases
        exist (the ``nnunet`` rule is then not available).

    Raises:
        ConfigError: ``fraction`` outside ``(0, 1)``.
    """
    if not 0 < fraction < 1:
        raise ConfigError(f"validation fraction: expected a fraction in (0, 1) (got {fraction})")
    ids = sorted(train_ids)
    if len(ids) < 2:
        return ids, []
    n_val = min(max(1, int(round(fraction * len(ids)))), len(ids) - 1)
    order = np.random.default_rng([int(seed), 5]).permutation(len(ids))
    val = sorted(ids[i] for i in order[:n_val])
    return [i for i in ids if i not in val], val


def ema(values: Sequence[float], *, keep: float = _EMA_KEEP) -> list[float]:
    """nnU-Net's exponential moving average of a per-epoch curve: ``e_1 = v_1``,
    ``e_k = keep * e_(k-1) + (1 - keep) * v_k``.

    Non-finite values are carried over as the previous average (nothing to learn from them).
    """
    out: list[float] = []
    for value in values:
        value = float(value)
        if not out:
            out.append(value)
        elif not np.isfinite(value):
            out.append(out[-1])
        elif not np.isfinite(out[-1]):
            out.append(value)
        else:
            out.append(keep * out[-1] + (1 - keep) * value)
    return out


def nnunet_epoch(val_dice: Sequence[float]) -> int | None:
    """1-based epoch nnU-Net keeps as ``checkpoint_best``: the last epoch at which the EMA of ``val_dice`` set a new
    strict maximum; ``None`` without a finite validation Dice."""
    best, epoch = -np.inf, None
    for k, value in enumerate(ema(val_dice)):
        if np.isfinite(value) and value > best:
            best, epoch = value, k + 1
    return epoch


def select_epochs(test_dice: Sequence[float], val_dice: Sequence[float] | None = None) -> dict[str, int | None]:
    """The 1-based epoch each rule of :data:`RULES` keeps.

    Args:
        test_dice: clean-test Dice per epoch (non-empty).
        val_dice: validation Dice per epoch (same length) or ``None`` (then ``nnunet`` is ``None``).

    Returns:
        ``{"best": epoch, "last": epoch, "nnunet": epoch or None}``; ``best`` is the first epoch of the highest Dice.

    Example:
        >>> select_epochs([0.5, 0.7, 0.6], [0.2, 0.3, 0.1])
        {'best': 2, 'last': 3, 'nnunet': 2}
    """
    if len(test_dice) == 0:
        raise ConfigError("select_epochs: no epochs")
    scores = np.asarray(test_dice, dtype=np.float64)
    scores = np.where(np.isfinite(scores), scores, -np.inf)
    return {
        "best": int(np.argmax(scores)) + 1,
        "last": len(test_dice),
        "nnunet": nnunet_epoch(val_dice) if val_dice is not None and len(val_dice) else None,
    }
