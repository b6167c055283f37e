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
        The same seed and slice key give the same noise; nothing changes away from the structure and its band:

        >>> import numpy as np
        >>> from umed.protectors import Budget, SliceBatch
        >>> square = np.pad(np.ones((1, 6, 6), dtype=bool), ((0, 0), (5, 5), (5, 5)))
        >>> one = SliceBatch(np.zeros((1, 16, 16), np.float32), square, ["case/7"])
        >>> first, again = (RandomProtector(Budget(), seed=3).perturb(one) for _ in range(2))
        >>> bool(np.array_equal(first, again)), float(np.abs(first[0, :2]).max())
        (True, 0.0)
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
