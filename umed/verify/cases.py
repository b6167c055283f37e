"""The mark-free test (dataset inference, Maini et al., ICLR 2021): does the suspect fit the released cases better
than the owner's private ones?

The owner keeps a random share of the cases private (``umed protect --private-share``, recorded in the key file).
A model trained on the release fits its cases better than cases it never saw; a model that never saw the release has
no reason to. Under the null hypothesis (the model was not trained on the released cases) the model does not depend
on which cases were drawn private, so the per-case scores are exchangeable between the two groups, and the
permutation test over the split is exact: ``p = (1 + #{splits whose statistic >= the observed}) / (1 + #splits)``
over every split of the same sizes (or over random splits, with the same +1 rule, when there are too many to list).
The statistic is the mean score of the released cases minus that of the private ones (score: Dice of the suspect's
answer against the case's mask). Power grows with the number of cases: the smallest p is ``1 / C(n, k)`` for ``k``
private cases among ``n`` (6 cases, 2 private: 1/15).

Example:
    >>> result = permutation_test([0.9, 0.8, 0.85, 0.9], [0.5, 0.6], rng=np.random.default_rng(0))
    >>> result.exact, result.splits, round(result.p_value, 4)
    (True, 15, 0.0667)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from umed.verify.key import MarkKey

__all__ = ["CaseTest", "CaseVerdict", "draw_private", "permutation_test", "score_cases"]

EXACT_LIMIT = 200_000  # list every split up to this many; random splits beyond


@dataclass(frozen=True)
class CaseTest:
    """The permutation test of released against private cases.

    Attributes:
        statistic: mean score of the released cases minus mean score of the private ones.
        p_value: exact (or, with random splits, conservative by the +1 rule) under the null.
        splits: number of splits the p-value is over.
        exact: every split listed (else ``splits`` random ones).
        released, private: number of cases in each group.
    """

    statistic: float
    p_value: float
    splits: int
    exact: bool
    released: int
    private: int

    @property
    def min_p_value(self) -> float:
        return 1.0 / math.comb(self.released + self.private, self.private) if self.exact else 1.0 / (self.splits + 1)


def draw_private(case_ids: Sequence[str], share: float, rng: np.random.Generator) -> tuple[str, ...]:
    """A random ``share`` of the cases (rounded, at least 1 when ``share`` > 0, at most all but one), sorted."""
    ids = sorted(case_ids)
    if share <= 0 or len(ids) < 2:
        return ()
    k = min(max(1, int(round(share * len(ids)))), len(ids) - 1)
    return tuple(sorted(ids[i] for i in rng.choice(len(ids), size=k, replace=False)))


def permutation_test(
    released: Sequence[float], private: Sequence[float], *, rng: np.random.Generator, random_splits: int = 100_000
) -> CaseTest:
    """The test of the module docstring on per-case scores (higher = fitted better)."""
    scores = np.asarray([*released, *private], dtype=np.float64)
    n, k = len(scores), len(private)
    if k == 0 or k == n:
        raise ValueError("permutation test: expected at least one released and one private case")
    observed = float(np.mean(scores[: n - k]) - np.mean(scores[n - k :]))
    total = float(scores.sum())

    def statistic(private_sum: np.ndarray | float) -> np.ndarray | float:
        return (total - private_sum) / (n - k) - private_sum / k

    tolerance = 1e-12 * max(1.0, abs(observed))
    if math.comb(n, k) <= EXACT_LIMIT:
        sums = np.array([scores[list(c)].sum() for c in itertools.combinations(range(n), k)])
        at_least = int(np.sum(statistic(sums) >= observed - tolerance))
        return CaseTest(observed, at_least / len(sums), len(sums), True, n - k, k)
    sums = np.array([scores[rng.choice(n, size=k, replace=False)].sum() for _ in range(random_splits)])
    at_least = int(np.sum(statistic(sums) >= observed - tolerance))
    return CaseTest(observed, (1 + at_least) / (1 + random_splits), random_splits, False, n - k, k)


@dataclass(frozen=True)
class CaseVerdict:
    """``umed verify cases``: the test and the per-case scores it was computed from."""

    test: CaseTest
    scores: dict[str, float]
    private_cases: tuple[str, ...]
    alpha: float

    def verdict(self) -> str:
        t = self.test
        where = (
            f"p = {t.p_value:.3g} (released cases fitted {t.statistic:+.3f} Dice better than the {t.private} private "
            f"ones; {'all' if t.exact else 'random'} {t.splits} splits; smallest possible p {t.min_p_value:.3g})"
        )
        if t.p_value <= self.alpha:
            return f"trained on the released cases: {where}"
        return f"no evidence of training on the released cases at level {self.alpha:g}: {where}"

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return {**asdict(self), "min_p_value": self.test.min_p_value, "verdict": self.verdict()}


def score_cases(
    images: Path,
    masks: Path | None,
    key: MarkKey,
    *,
    predictions: Path | None = None,
    model: Path | None = None,
    spatial_dims: int = 2,
    window: tuple[int, ...] | None = None,
    structure_labels: Sequence[int] | None = None,
    alpha: float = 0.01,
    seed: int = 0,
) -> CaseVerdict:
    """The mark-free test on files: the suspect's answers (a predictions folder, or a TorchScript model run here) on
    every clean case of ``images`` (released and private), scored by Dice against the masks.

    Raises:
        InputError: the key has no private cases, a private case is not in ``images``, an answer is missing or of the
            wrong shape.
    """
    from umed.errors import InputError
    from umed.io import discover_cases, load_case, load_mask
    from umed.metrics import dice
    from umed.regions import foreground
    from umed.verify.answers import answer_path, check_complete, read_answer
    from umed.verify.suspect import load_model, model_answer

    if not key.private_cases:
        raise InputError("key file: no private cases (expected a release made with umed protect --private-share)")
    if (predictions is None) == (model is None):
        raise InputError("verify cases: expected one of a predictions folder and a model")
    cases = {case.case_id: case for case in discover_cases(Path(images), Path(masks) if masks is not None else None)}
    missing = sorted(set(key.private_cases) - set(cases))
    if missing:
        raise InputError(
            f"{images}: private case(s) {missing[:5]} not found (expected every case, released and private)"
        )
    unlabelled = [case.image_path for case in cases.values() if case.mask_path is None]
    if unlabelled:
        raise InputError(f"{unlabelled[0]}: no label map (expected one beside each case)")
    if predictions is not None:
        check_complete(Path(predictions), list(cases), "cases")
    suspect = load_model(model) if model is not None else None
    scores = {}
    for case_id, case in cases.items():  # one case in memory at a time, each file read once
        image, meta = load_case(case.image_path)
        labels, _ = load_mask(case.mask_path, image_meta=meta)  # type: ignore[arg-type]
        if suspect is not None:
            answer = model_answer(
                suspect, image, where=f"{model} on {case.image_path}", spatial_dims=spatial_dims, window=window
            )
        else:
            answer = read_answer(answer_path(Path(predictions), case_id), tuple(meta.shape))  # type: ignore[arg-type]
        scores[case_id] = dice(answer.values > 0.5, foreground(np.asarray(labels), structure_labels))
    released = [scores[c] for c in cases if c not in key.private_cases]
    private = [scores[c] for c in key.private_cases]
    test = permutation_test(released, private, rng=np.random.default_rng(seed))
    return CaseVerdict(test, scores, key.private_cases, alpha)
