"""TAP: error-maximising (adversarial) poisoning (Fowl et al., "Adversarial Examples Make Strong Poisons",
NeurIPS 2021), for segmentation slices.

``fit`` trains a surrogate on clean crops; ``perturb`` runs error-maximising PGD per slice against it, towards
the true labels (untargeted). Budget: ``budget.eps_max * eps_scale`` on the whole support.
"""

from __future__ import annotations

from umed.protectors.base import PreparedSlices
from umed.protectors.crops import CropSampler
from umed.protectors.surrogate_protector import FitResult, Progress, Rng, SurrogateProtector

__all__ = ["TAPProtector"]


class TAPProtector(SurrogateProtector):
    """Adversarial poisoning against a surrogate trained on clean data (Fowl et al., NeurIPS 2021).

    Settings (all optional; defaults in ``umed/configs/methods/tap.yaml``):
        steps, step_size (a fraction of eps), random_init: PGD at perturb time.
        train_steps, batch_size, crop, lr, flips: clean surrogate training.

    Example:
        >>> import numpy as np
        >>> from umed.protectors import Budget, SliceBatch
        >>> fg = np.zeros((2, 32, 32), dtype=bool); fg[:, 8:20, 10:22] = True
        >>> batch = SliceBatch(np.full((2, 32, 32), 0.5, np.float32), fg, ["case/0", "case/1"])
        >>> protector = TAPProtector(Budget(), seed=0, train_steps=2, batch_size=2, crop=16, steps=1)
        >>> protector.fit(batch)["steps"], protector.perturb(batch).shape
        (2, (2, 32, 32))
    """

    name = "tap"
    MAXIMIZE = True

    def _fit(self, prepared: PreparedSlices, sampler: CropSampler, rng: Rng, progress: Progress) -> FitResult:
        model = self._new_surrogate()
        log = self._train(model, sampler, rng, progress, "tap: training surrogate")
        return [model], log
