"""Probes held in memory, for the audit and the benchmarks: the same design as ``umed verify probes`` writes to files,
built from clean test volumes already in the audit's normalised space, and tested on a torch model at hand.

Example:
    >>> import numpy as np
    >>> from umed.verify.family import MarkFamily
    >>> from umed.verify.key import MarkKey
    >>> from umed.verify.settings import VerifySettings
    >>> base = np.full((40, 40, 3), 0.5, np.float32); structure = np.zeros(base.shape, bool)
    >>> settings = VerifySettings.shipped().replace(controls=9, per_mark=2, radius=4)
    >>> probes = MemoryProbes([base], [structure], MarkKey(7, MarkFamily(kind="edge"), 1.0), settings, seed=0)
    >>> len(probes.design.seeds), sum(probes.design.copies) >= 1
    (10, True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from umed.verify.design import design_from_settings, render_probe, score_design
from umed.verify.key import MarkKey
from umed.verify.settings import VerifySettings
from umed.verify.stats import RankTest

if TYPE_CHECKING:
    from torch import nn

__all__ = ["MemoryProbes", "ModelTest"]


@dataclass(frozen=True)
class ModelTest:
    """The test of one model: on its probabilities (``soft``) and on its hard answers (``hard``, as a suspect that
    returns only masks would give)."""

    soft: RankTest
    hard: RankTest

    def to_dict(self) -> dict[str, float | int]:
        return {
            "p_soft": self.soft.p_value,
            "rank_soft": self.soft.rank,
            "effect_soft": self.soft.effect,
            "p_hard": self.hard.p_value,
            "rank_hard": self.hard.rank,
            "controls": self.soft.n_controls,
        }


class MemoryProbes:
    """Probes of ``key`` from clean base volumes (normalised units) and their structures."""

    def __init__(
        self,
        bases: Sequence[np.ndarray],
        structures: Sequence[np.ndarray],
        key: MarkKey,
        settings: VerifySettings,
        *,
        seed: int,
    ) -> None:
        rng = np.random.default_rng([seed, 0x70726F6265])
        self.bases = [np.asarray(b, np.float32) for b in bases]
        self.design = design_from_settings(self.bases, structures, key.seed, key.family, settings, rng)
        self.slices = {
            b: sorted({p.slot.z for p in self.design.placements if p.base == b}) for b in range(len(self.bases))
        }

    def test(self, model: nn.Module, *, window: tuple[int, ...] | None = None) -> ModelTest:
        """The model's answers on every probe (rendered one at a time) and the test; ``window``: a 3D model's
        sliding-window patch (``None``: a 2D model, slice by slice)."""
        from umed.verify.inference import structure_probability

        def answer(volume: np.ndarray, base: int) -> np.ndarray:
            if window is not None and len(window) == 3:
                return structure_probability(model, volume, window=window)
            return structure_probability(model, volume, slices=self.slices[base])

        bases = {b: answer(volume, b) for b, volume in enumerate(self.bases)}
        answers = {
            (b, c): answer(render_probe(self.design, volume, base=b, copy=c), b)
            for b, volume in enumerate(self.bases)
            for c in range(self.design.copies[b])
        }
        soft = score_design(self.design, answers, bases)
        hard = score_design(
            self.design,
            {k: (v > 0.5).astype(np.float32) for k, v in answers.items()},
            {k: (v > 0.5).astype(np.float32) for k, v in bases.items()},
        )
        return ModelTest(soft, hard)
