"""The mark family: deterministic per seed, zero mean, anchored to the slice, and distinct across seeds."""

from __future__ import annotations

import numpy as np
import pytest

from umed.errors import ConfigError
from umed.verify.family import KINDS, MarkFamily


@pytest.mark.parametrize("kind", KINDS)
def test_field_is_a_function_of_the_seed_and_the_position(kind):
    family = MarkFamily(kind=kind)
    whole = family.field(12345, (40, 30))
    assert whole.dtype == np.float32 and np.abs(whole).max() <= 1.0
    np.testing.assert_array_equal(family.field(12345, (40, 30)), whole)  # same seed, same mark
    np.testing.assert_array_equal(family.field(12345, (10, 7), origin=(20, 13)), whole[20:30, 13:20])  # anchored
    assert not np.array_equal(family.field(54321, (40, 30)), whole)


def test_edge_marks_alternate_along_their_axis():
    family = MarkFamily(kind="edge")
    for seed in range(20):
        axis, frequency, _, carrier = family.edge(seed)
        assert carrier == 0.5
        assert axis in (0, 1) and 0.0 <= frequency <= 0.5
        field = family.field(seed, (16, 16)).astype(np.float64)
        shifted = np.roll(field, 1, axis=axis)[1:-1, 1:-1] if axis == 0 else np.roll(field, 1, axis=1)[1:-1, 1:-1]
        # period 2 along the axis: the neighbour has the opposite sign (times the slow wave, which is the same there)
        np.testing.assert_allclose(shifted, -field[1:-1, 1:-1], atol=1e-6)


def test_tiles_are_balanced_and_nearly_orthogonal():
    family = MarkFamily(kind="tile", cell=3, cells=6)
    tiles = np.array([family.tile(seed).ravel() for seed in range(100)])
    assert np.all(tiles.sum(axis=1) == 0)
    correlation = np.corrcoef(tiles)[np.triu_indices(100, 1)]
    assert abs(correlation.mean()) < 0.02 and np.abs(correlation).max() < 0.8


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match="kind"):
        MarkFamily(kind="spiral")
    with pytest.raises(ConfigError, match="period"):
        MarkFamily(kind="grating", period_min=1.0)
    with pytest.raises(ConfigError, match="seed"):
        MarkFamily().field(-1, (4, 4))
    with pytest.raises(ConfigError):
        MarkFamily.from_dict({"cell": "x"})
