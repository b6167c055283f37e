"""Random noise of the same budget: the control every table of unlearnable examples needs.

Model-free: uniform noise in ``[-eps, eps]`` on the support (structure plus contour band), ``eps =
budget.eps_max * eps_scale``, drawn per slice from the run seed and the slice key.
"""

from __future__ import annotations

import numpy as np

from umed.protectors.base import SliceBatch, finalize, prepare_slices
from umed.protectors.model_free import ModelFreeProtector
from umed.protectors.seeding import key_rng

__all__ = ["RandomProtector"]


class RandomProtector(ModelFreeProtector):
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

    def perturb(self, batch: SliceBatch) -> np.ndarray:
        """``(B, H, W)`` float32 uniform noise on the support, one seeded draw per slice key."""
        prepared = prepare_slices(batch, self.budget)
        shape = prepared.images.shape[1:]
        noise = np.stack(
            [key_rng(self.seed, self.name, key).uniform(-1.0, 1.0, size=shape) for key in prepared.keys]
        ).astype(np.float32)
        return finalize(noise * prepared.bound, prepared.bound)
