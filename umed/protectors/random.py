"""Random noise of the same budget: the control every table of unlearnable examples needs.

Model-free: uniform noise in ``[-eps, eps]`` on the support (structure plus contour band), ``eps =
budget.eps_max * eps_scale``, drawn per slice from the run seed and the slice key.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from umed.protectors.base import Budget, ProgressCallback, Protector, SliceBatch, finalize, prepare_slices
from umed.protectors.seeding import key_rng
from umed.protectors.settings import check_budget, resolve_settings

__all__ = ["RandomProtector"]


class RandomProtector(Protector):
    """Uniform noise in ``+-eps`` on the support (no settings).

    Example:
        >>> import numpy as np
        >>> from umed.protectors import Budget, SliceBatch
        >>> fg = np.zeros((2, 32, 32), dtype=bool); fg[:, 8:20, 10:22] = True
        >>> batch = SliceBatch(np.full((2, 32, 32), 0.5, np.float32), fg, ["case/0", "case/1"])
        >>> delta = RandomProtector(Budget(), seed=0).perturb(batch)
        >>> delta.shape, bool(np.abs(delta).max() <= np.float32(8 / 255)), float(delta[0, 0, 0])
        ((2, 32, 32), True, 0.0)
    """

    name = "random"
    SETTINGS: dict = {}

    def __init__(self, budget: Budget, *, seed: int = 0, **settings: Any) -> None:
        check_budget(self.name, budget)
        super().__init__(budget, seed=int(seed), **resolve_settings(self.name, self.SETTINGS, settings))

    def fit(self, batch: SliceBatch, *, progress: ProgressCallback | None = None) -> dict[str, Any]:
        """Nothing to learn."""
        if progress is not None:
            progress("random: nothing to fit", 1, 1)
        return {"model_free": True}

    def perturb(self, batch: SliceBatch) -> np.ndarray:
        """``(B, H, W)`` float32 uniform noise on the support, one seeded draw per slice key."""
        prepared = prepare_slices(batch, self.budget)
        shape = prepared.images.shape[1:]
        noise = np.stack(
            [key_rng(self.seed, self.name, key).uniform(-1.0, 1.0, size=shape) for key in prepared.keys]
        ).astype(np.float32)
        return finalize(noise * prepared.bound, prepared.bound)
