"""SALM: significant-pixel unlearnable examples (Sun et al., "Medical Unlearnable Examples: Securing Medical
Data from Unauthorized Training via Sparsity-Aware Local Masking", arXiv 2403.10573, ICML 2024 workshop).

No official code exists; umed's reconstruction for segmentation data, where the loss is the segmentation loss
(CE + Dice): ``fit`` runs EM-style min-min training of a surrogate whose noise is itself sparse (each update keeps
only the top-K voxels of the current gradient); ``perturb`` (1) ranks the support voxels of each slice by
``|dL/dx|`` of the fitted surrogate at the clean image and keeps the top ``k_fraction`` as a sparse mask, then
(2) runs error-minimising PGD on those voxels only. At most ``K = max(1, floor(k_fraction * |support|))``
voxels of a slice change, each by at most ``budget.eps_max * eps_scale``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from umed.protectors.base import PreparedSlices
from umed.protectors.crops import CropSampler
from umed.protectors.pgd import pgd, top_k_mask
from umed.protectors.settings import Setting
from umed.protectors.surrogate_protector import SURROGATE_SETTINGS, FitResult, Progress, Rng, SurrogateProtector

__all__ = ["SALMProtector"]


class SALMProtector(SurrogateProtector):
    """Sparse error-minimising noise on the most significant voxels (Sun et al., 2024).

    Settings (all optional; defaults in ``umed/configs/methods/salm.yaml``):
        k_fraction: fraction of a slice's support voxels that may change.
        steps, step_size (a fraction of eps), random_init: PGD at perturb time.
        train_steps, batch_size, crop, lr, flips, train_noise_steps: min-min
        training with sparse noise.

    Example:
        >>> import numpy as np
        >>> from umed import regions
        >>> from umed.protectors import Budget, SliceBatch
        >>> fg = np.zeros((2, 32, 32), dtype=bool); fg[:, 8:20, 10:22] = True
        >>> batch = SliceBatch(np.full((2, 32, 32), 0.5, np.float32), fg, ["case/0", "case/1"])
        >>> small = dict(train_steps=2, batch_size=2, crop=16, steps=1, train_noise_steps=1)
        >>> protector = SALMProtector(Budget(), seed=0, k_fraction=0.05, **small)
        >>> delta = protector.fit(batch) and protector.perturb(batch)
        >>> support = regions.support(fg, 3, batch=True).sum(axis=(1, 2))
        >>> bool(((delta != 0).sum(axis=(1, 2)) <= np.floor(0.05 * support)).all())
        True
    """

    name = "salm"
    SETTINGS = {
        **SURROGATE_SETTINGS,
        "train_noise_steps": Setting(int, low=1),
        "k_fraction": Setting(float, low=0.0, low_open=True, high=1.0),
    }

    def _sparse_pgd(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, bound: torch.Tensor, init: torch.Tensor, steps: int
    ) -> torch.Tensor:
        mask = top_k_mask(model, x, y, bound > 0, self.settings["k_fraction"])
        return pgd(
            [model], x, y, bound * mask, steps=steps, step_size=self.settings["step_size"], maximize=False, init=init
        )

    def _fit(self, prepared: PreparedSlices, sampler: CropSampler, rng: Rng, progress: Progress) -> FitResult:
        settings = self.settings
        model = self._new_surrogate()
        noise = np.zeros_like(sampler.arrays["bound"])

        def update(x: torch.Tensor, y: torch.Tensor, b: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
            return self._sparse_pgd(model, x, y, b, delta, settings["train_noise_steps"])

        log = self._train(model, sampler, rng, progress, "salm: min-min training", noise=noise, noise_update=update)
        return [model], log

    def _attack(
        self, x: torch.Tensor, y: torch.Tensor, bound: torch.Tensor, init: torch.Tensor, *_: object
    ) -> torch.Tensor:
        """Sparse PGD on SALM's significant voxels (no EOT: the view is not used)."""
        return self._sparse_pgd(self.models[0], x, y, bound, init, self.settings["steps"])
