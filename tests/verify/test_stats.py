"""The rank test is exact under the null; the naive paired t-test is not (why umed refuses it)."""

from __future__ import annotations

import numpy as np
import pytest

from umed.verify.stats import naive_paired_test, rank_test


def test_rank_test_counts_ties_against_the_key():
    result = rank_test(0.5, [0.5, 0.4, 0.6])
    assert result.rank == 3 and result.p_value == pytest.approx(0.75)
    assert result.min_p_value == pytest.approx(0.25)


def test_rank_test_is_exact_whatever_the_model_prefers():
    """The key is one more draw from the family: with a model whose responses depend strongly on the pattern (a fixed
    random preference per pattern), the key's p-value is uniform: P(p <= a) <= a for every a."""
    rng = np.random.default_rng(0)
    preference = rng.gamma(0.5, 1.0, size=100_000)  # the model's own bias: heavy-tailed, pattern-specific
    p_values = []
    for _ in range(4000):
        marks = rng.choice(len(preference), size=100, replace=False)  # key = marks[0]: a uniform draw like the rest
        scores = preference[marks] + rng.normal(0, 0.05, size=100)  # plus slot noise
        p_values.append(rank_test(scores[0], scores[1:]).p_value)
    p_values = np.array(p_values)
    for level in (0.01, 0.05, 0.1, 0.5):
        # binomial sd at 4000 draws is at most 0.008; 3 sd of slack
        assert np.mean(p_values <= level) <= level + 3 * np.sqrt(level * (1 - level) / 4000)
    assert np.mean(p_values <= 0.5) > 0.45  # and not trivially conservative


def test_naive_paired_test_accuses_an_innocent_model():
    """Issue 21's trap: an innocent model that answers structured patterns 0.3 points more than noise (7.4% against
    7.1%), on 300 paired probes, is 'significant' under a paired t-test."""
    rng = np.random.default_rng(1)
    noise = rng.normal(0.071, 0.02, size=300)
    key = noise + 0.003 + rng.normal(0, 0.01, size=300)
    assert naive_paired_test(key, noise) < 0.01


def test_rank_test_rejects_bad_input():
    with pytest.raises(ValueError):
        rank_test(1.0, [])
    with pytest.raises(ValueError):
        rank_test(float("nan"), [0.1])
