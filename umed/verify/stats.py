"""The verification test: the secret key's rank among control marks drawn from the same family.

Under the null hypothesis (the suspect model never saw data marked with this key) the key is one more independent
draw from the family, like each control, and every mark is scored by the same rule on slots assigned by a random
permutation; the scores are therefore exchangeable, and the key's rank is uniform among the ``n + 1`` marks. With
``p = (1 + #{controls scoring >= the key}) / (n + 1)``, ``P(p <= alpha) <= alpha`` for every alpha, whatever the
model's own preferences among patterns (ties count against the key, so the test is conservative). The smallest
p-value it can give is ``1 / (n + 1)``.

:func:`naive_paired_test` is the test an owner would reach for first (the key's responses against random noise of the
same amplitude, paired t-test): it has no such guarantee, and ``umed verify`` never uses it
(``tests/verify/test_stats.py`` shows why).

Example:
    >>> result = rank_test(0.9, [0.1, 0.2, 0.95, 0.3])
    >>> result.rank, round(result.p_value, 3)
    (2, 0.4)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["RankTest", "naive_paired_test", "rank_test"]


@dataclass(frozen=True)
class RankTest:
    """The result of :func:`rank_test`.

    Attributes:
        key_score: the key's score.
        control_mean: mean score of the controls.
        control_sd: standard deviation of the controls' scores (ddof 1).
        rank: 1 + the number of controls scoring at or above the key (1 = the key scored highest).
        n_controls: number of control marks.
        p_value: ``rank / (n_controls + 1)``: exact (conservative with ties) under the null.
        effect: ``(key_score - control_mean) / control_sd``: how many control spreads the key stands out.
    """

    key_score: float
    control_mean: float
    control_sd: float
    rank: int
    n_controls: int
    p_value: float
    effect: float

    @property
    def min_p_value(self) -> float:
        """The smallest p-value this many controls can give."""
        return 1.0 / (self.n_controls + 1)


def rank_test(key_score: float, control_scores: Sequence[float] | np.ndarray) -> RankTest:
    """The key's rank among the controls (higher score = more evidence); see the module docstring."""
    controls = np.asarray(control_scores, dtype=np.float64).ravel()
    if controls.size == 0:
        raise ValueError("rank test: expected at least one control score")
    if not (np.isfinite(key_score) and np.isfinite(controls).all()):
        raise ValueError("rank test: scores must be finite")
    rank = 1 + int(np.sum(controls >= key_score))
    sd = float(np.std(controls, ddof=1)) if controls.size > 1 else 0.0
    mean = float(np.mean(controls))
    effect = (float(key_score) - mean) / sd if sd > 0 else (math.inf if key_score > mean else 0.0)
    return RankTest(
        key_score=float(key_score),
        control_mean=mean,
        control_sd=sd,
        rank=rank,
        n_controls=int(controls.size),
        p_value=rank / (controls.size + 1),
        effect=effect,
    )


def naive_paired_test(key_responses: np.ndarray, noise_responses: np.ndarray) -> float:
    """One-sided paired t-test of the key's responses against noise of the same amplitude on the same slots.

    **Not valid for verification**: a model that never saw the key can answer structured patterns more than noise
    (its own bias), and with hundreds of slots that bias alone is "significant". Kept to show why it is refused.
    """
    from scipy import stats

    differences = np.asarray(key_responses, np.float64) - np.asarray(noise_responses, np.float64)
    result = stats.ttest_1samp(differences, 0.0, alternative="greater")
    return float(result.pvalue)
