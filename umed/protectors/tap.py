"""TAP: error-maximising (adversarial) poisoning (Fowl et al., "Adversarial Examples Make Strong Poisons",
NeurIPS 2021), for segmentation slices.

``fit`` trains a surrogate on clean crops; ``perturb`` runs error-maximising PGD per slice against it, towards
the true labels (untargeted). Budget: ``budget.eps_max * eps_scale`` on the whole support.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from umed.protectors.base import PreparedSlices, ProgressCallback
from umed.protectors.crops import CropSampler
from umed.protectors.pgd import pgd
from umed.protectors.seeding import derive_seed
from umed.protectors.surrogate import make_surrogate
from umed.protectors.surrogate_protector import SurrogateProtector
from umed.protectors.surrogate_training import fit_surrogate

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

    def _fit(
        self,
        prepared: PreparedSlices,
        sampler: CropSampler,
        rng: np.random.Generator,
        progress: ProgressCallback | None,
    ) -> tuple[list[nn.Module], dict[str, Any]]:
        settings = self.settings
        model = make_surrogate(seed=derive_seed(self.seed, self.name, "surrogate"))
        log = fit_surrogate(
            model,
            sampler,
            rng,
            steps=settings["train_steps"],
            batch_size=settings["batch_size"],
            lr=settings["lr"],
            progress=progress,
            description="tap: training surrogate",
        )
        return [model], log

    def _attack(
        self, x: torch.Tensor, y: torch.Tensor, bound: torch.Tensor, init: torch.Tensor, support: torch.Tensor
    ) -> torch.Tensor:
        return pgd(
            self.models,
            x,
            y,
            bound,
            steps=self.settings["steps"],
            step_size=self.settings["step_size"],
            maximize=True,
            init=init,
        )
