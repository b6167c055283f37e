"""SEP: self-ensemble protection (Chen et al., "Self-Ensemble Protection: Training Checkpoints Are Good Data
Protectors", ICLR 2023), for segmentation slices.

``fit`` trains one surrogate on clean crops and keeps ``checkpoints`` copies evenly spaced over the run;
``perturb`` runs error-maximising PGD per slice against the mean loss of the checkpoint ensemble. Budget:
``budget.eps_max * eps_scale`` on the whole support. (The paper's feature-alignment term is not used.)
"""

from __future__ import annotations

import copy

from torch import nn

from umed.protectors.base import PreparedSlices
from umed.protectors.crops import CropSampler
from umed.protectors.settings import Setting
from umed.protectors.surrogate_protector import SURROGATE_SETTINGS, FitResult, Progress, Rng, SurrogateProtector

__all__ = ["SEPProtector"]


class SEPProtector(SurrogateProtector):
    """Error-maximising noise against an ensemble of checkpoints of one training run (Chen et al., ICLR 2023).

    Settings (all optional; defaults in ``umed/configs/methods/sep.yaml``):
        steps, step_size (a fraction of eps), random_init: PGD at perturb time.
        train_steps, batch_size, crop, lr, flips: clean surrogate training.
        checkpoints: checkpoints kept, at ``train_steps * k / checkpoints`` for ``k = 1..checkpoints``.

    Example:
        >>> import numpy as np
        >>> from umed.protectors import Budget, SliceBatch
        >>> fg = np.zeros((2, 32, 32), dtype=bool); fg[:, 8:20, 10:22] = True
        >>> batch = SliceBatch(np.full((2, 32, 32), 0.5, np.float32), fg, ["case/0", "case/1"])
        >>> protector = SEPProtector(Budget(), seed=0, checkpoints=2, train_steps=2, batch_size=2, crop=16, steps=1)
        >>> protector.fit(batch)["checkpoint_steps"], protector.perturb(batch).shape
        ([1, 2], (2, 32, 32))
    """

    name = "sep"
    MAXIMIZE = True
    SETTINGS = {**SURROGATE_SETTINGS, "checkpoints": Setting(int, low=1)}

    def _fit(self, prepared: PreparedSlices, sampler: CropSampler, rng: Rng, progress: Progress) -> FitResult:
        settings = self.settings
        total, count = settings["train_steps"], settings["checkpoints"]
        keep_at = {max(1, round(total * k / count)) for k in range(1, count + 1)}
        model = self._new_surrogate()
        kept: list[nn.Module] = []

        def keep(step: int) -> None:
            if step in keep_at:
                snapshot = copy.deepcopy(model)
                snapshot.eval()
                kept.append(snapshot)

        log = self._train(model, sampler, rng, progress, "sep: training surrogate", on_step=keep)
        log["checkpoint_steps"] = sorted(keep_at)
        return kept, log
