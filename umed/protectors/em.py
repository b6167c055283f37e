"""EM: sample-wise error-minimising noise (Huang et al., "Unlearnable Examples: Making Personal Data
Unexploitable", ICLR 2021; code HanxunH/Unlearnable-Examples), for segmentation slices.

``fit`` runs the bi-level min-min optimisation on crops of the training slices: each step updates the crops'
noise by a few error-minimising PGD steps against the current surrogate, then trains the surrogate one step on the
noisy crops, so the surrogate learns to rely on the noise. ``perturb`` runs error-minimising PGD per slice against
the fitted surrogate (start drawn from the run seed and the slice key).

``eot`` (off by default) makes it REM-style (Fu et al., ICLR 2022, without the adversarial inner step): every PGD
step, during ``fit`` and ``perturb``, and every surrogate step sees ``x + delta`` through one transform of the
attacker's pipeline drawn from ``["none", *eot]`` (:mod:`umed.protectors.eot`), so the noise is chosen for what
survives blur, resampling or nnU-Net's augmentation. At ``perturb`` the draws are seeded by the run seed and the
batch's slice keys, so the bytes do not depend on how cases are split over workers.

Budget: ``budget.eps_max * eps_scale`` on the whole support (structure plus contour band); the loss is CE + Dice of
the 2-class segmentation.
"""

from __future__ import annotations

import numpy as np
import torch

from umed.protectors.base import PreparedSlices
from umed.protectors.crops import CropSampler
from umed.protectors.pgd import pgd
from umed.protectors.settings import Setting
from umed.protectors.surrogate_protector import SURROGATE_SETTINGS, FitResult, Progress, Rng, SurrogateProtector

__all__ = ["EMProtector"]


class EMProtector(SurrogateProtector):
    """Error-minimising noise, per slice (Huang et al., ICLR 2021).

    Settings (all optional; defaults in ``umed/configs/methods/em.yaml``):
        steps, step_size (a fraction of eps), random_init: PGD at perturb time.
        train_steps, batch_size, crop, lr, flips: min-min training.
        train_noise_steps: PGD steps on a batch's noise before each surrogate step during ``fit``.
        eot: attacker transforms drawn at every PGD and surrogate step (REM-style); ``[]``: off.

    Example:
        >>> import numpy as np
        >>> from umed.protectors import Budget, SliceBatch
        >>> fg = np.zeros((2, 32, 32), dtype=bool); fg[:, 8:20, 10:22] = True
        >>> batch = SliceBatch(np.full((2, 32, 32), 0.5, np.float32), fg, ["case/0", "case/1"])
        >>> small = dict(train_steps=2, batch_size=2, crop=16, steps=1, train_noise_steps=1)
        >>> protector = EMProtector(Budget(), seed=0, **small)
        >>> protector.fit(batch)["steps"], protector.perturb(batch).shape
        (2, (2, 32, 32))
    """

    name = "em"
    SETTINGS = {**SURROGATE_SETTINGS, "train_noise_steps": Setting(int, low=1), "eot": Setting(list)}

    def _fit(self, prepared: PreparedSlices, sampler: CropSampler, rng: Rng, progress: Progress) -> FitResult:
        settings = self.settings
        model = self._new_surrogate()
        bound = sampler.arrays["bound"]
        if settings["random_init"]:
            noise = (rng.random(bound.shape, dtype=np.float32) * np.float32(2) - np.float32(1)) * bound
        else:
            noise = np.zeros_like(bound)
        view = self._eot_view("fit")

        def update(x: torch.Tensor, y: torch.Tensor, b: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
            return pgd(
                [model],
                x,
                y,
                b,
                steps=settings["train_noise_steps"],
                step_size=settings["step_size"],
                maximize=False,
                init=delta,
                view=view,
            )

        log = self._train(
            model, sampler, rng, progress, "em: min-min training", noise=noise, noise_update=update, view=view
        )
        return [model], log
