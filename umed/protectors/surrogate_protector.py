"""The base of the per-sample baselines that attack trained surrogate(s) with PGD (EM, TAP, SEP, SALM).

EM, TAP, SEP and SALM differ only in how they train their surrogate(s) and in the sign and support of their PGD
attack; this class holds everything else, so a fix reaches every method at once.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeAlias

import numpy as np
import torch
from torch import nn

from umed.errors import ConfigError
from umed.protectors.base import (
    Budget,
    PreparedSlices,
    ProgressCallback,
    Protector,
    SliceBatch,
    finalize,
    prepare_slices,
)
from umed.protectors.crops import CropSampler
from umed.protectors.eot import AttackerView, check_eot
from umed.protectors.pgd import pgd, project
from umed.protectors.seeding import derive_seed, key_rng
from umed.protectors.settings import Setting, check_budget, resolve_settings
from umed.protectors.surrogate import make_surrogate, plain_state, sub_state, to_tensor
from umed.protectors.surrogate_training import fit_surrogate

__all__ = ["SURROGATE_SETTINGS", "SurrogateProtector"]


SURROGATE_SETTINGS: dict[str, Setting] = {
    "steps": Setting(int, low=0),
    "step_size": Setting(float, low=0.0, low_open=True, high=1.0),
    "random_init": Setting(bool),
    "train_steps": Setting(int, low=1),
    "batch_size": Setting(int, low=1),
    "crop": Setting(int, low=8),
    "lr": Setting(float, low=0.0, low_open=True),
    "flips": Setting(bool),
}
"""Settings every surrogate-based baseline shares: ``steps``/``step_size``/``random_init`` of the PGD run at
perturb time (``step_size`` is a fraction of the budget), ``train_steps``, ``batch_size``, ``crop``, ``lr`` and
``flips`` of the surrogate training."""


#: Type aliases of the :meth:`SurrogateProtector._fit` hook: the crop generator, the progress callback, and what a
#: fit returns (the models to attack with, and the fit's log).
Rng: TypeAlias = np.random.Generator
Progress: TypeAlias = "ProgressCallback | None"
FitResult: TypeAlias = "tuple[list[nn.Module], dict[str, Any]]"


class SurrogateProtector(Protector):
    """Base of the per-sample baselines that attack trained surrogate(s) with PGD (EM, TAP, SEP, SALM).

    Subclasses implement :meth:`_fit` (train and return the surrogates) and :meth:`_attack` (one batch of
    slices). This class resolves settings, prepares regions and bounds, batches slices by ``batch_size``, seeds
    each slice's PGD start from ``(seed, method, key)`` and enforces support and budget on the result. The budget
    is ``budget.eps_max * eps_scale`` on the whole support.
    """

    SETTINGS: ClassVar[dict[str, Setting]] = SURROGATE_SETTINGS
    MAXIMIZE: ClassVar[bool] = False
    """The sign of the default :meth:`_attack`: error-maximising (TAP, SEP) or error-minimising (EM)."""

    def __init__(self, budget: Budget, *, seed: int = 0, **settings: Any) -> None:
        check_budget(self.name, budget)
        super().__init__(budget, seed=int(seed), **resolve_settings(self.name, self.SETTINGS, settings))
        if "eot" in self.settings:  # a method with the attacker's view inside its PGD steps (see _eot_view)
            self.settings["eot"] = check_eot(self.name, self.settings["eot"])
        self.models: list[nn.Module] = []

    # -- subclass hooks
    def _fit(self, prepared: PreparedSlices, sampler: CropSampler, rng: Rng, progress: Progress) -> FitResult:
        raise NotImplementedError

    def _attack(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        bound: torch.Tensor,
        init: torch.Tensor,
        support: torch.Tensor,
        view: AttackerView | None = None,
    ) -> torch.Tensor:
        """PGD against the fitted surrogate(s): error-maximising when :attr:`MAXIMIZE`, else error-minimising;
        through ``view`` (EOT) when given."""
        steps, step_size = self.settings["steps"], self.settings["step_size"]
        return pgd(
            self.models, x, y, bound, steps=steps, step_size=step_size, maximize=self.MAXIMIZE, init=init, view=view
        )

    def _eot_view(self, *parts: object) -> AttackerView | None:
        """The attacker's view (a method with an ``eot`` setting) seeded by ``parts``; None when EOT is off."""
        names = self.settings.get("eot", [])
        return AttackerView(names, derive_seed(self.seed, self.name, "eot", *parts)) if names else None

    # -- helpers
    def _new_surrogate(self) -> nn.Module:
        """The surrogate, initialised from ``(seed, method)``."""
        return make_surrogate(seed=derive_seed(self.seed, self.name, "surrogate"))

    def _train(
        self,
        model: nn.Module,
        sampler: CropSampler,
        rng: np.random.Generator,
        progress: ProgressCallback | None,
        description: str,
        **options: Any,
    ) -> dict[str, Any]:
        """:func:`fit_surrogate` with this method's ``train_steps``, ``batch_size`` and ``lr``."""
        s = self.settings
        return fit_surrogate(
            model,
            sampler,
            rng,
            steps=s["train_steps"],
            batch_size=s["batch_size"],
            lr=s["lr"],
            progress=progress,
            description=description,
            **options,
        )

    # -- Protector
    def fit(self, batch: SliceBatch, *, progress: ProgressCallback | None = None) -> dict[str, Any]:
        """Train the surrogate(s) on crops of ``batch``; returns the training log."""
        prepared = prepare_slices(batch, self.budget)
        sampler = CropSampler(
            {"image": prepared.images, "fg": prepared.fg, "bound": prepared.bound},
            crop=self.settings["crop"],
            flips=self.settings["flips"],
        )
        rng = key_rng(self.seed, self.name, "fit")
        self.models, log = self._fit(prepared, sampler, rng, progress)
        return log

    def perturb(self, batch: SliceBatch) -> np.ndarray:
        """Per-slice PGD against the fitted surrogate(s); ``(B, H, W)`` float32, see :class:`Protector`.

        Raises:
            ConfigError: the protector was neither fitted nor loaded.
        """
        if not self.models:
            raise ConfigError(f"method '{self.name}': not fitted (call fit() or load_state_dict() first)")
        prepared = prepare_slices(batch, self.budget)
        out = np.zeros(prepared.images.shape, dtype=np.float32)
        size = self.settings["batch_size"]
        for start in range(0, len(prepared.keys), size):
            chunk = slice(start, start + size)
            if not prepared.support[chunk].any():
                continue
            bound_np = prepared.bound[chunk]
            if self.settings["random_init"]:
                shape = bound_np.shape[1:]
                keys = prepared.keys[chunk]
                starts = [key_rng(self.seed, self.name, key).uniform(-1.0, 1.0, size=shape) for key in keys]
                init_np = np.stack(starts).astype(np.float32) * bound_np
            else:
                init_np = np.zeros_like(bound_np)
            x, y, bound = to_tensor(prepared.images[chunk]), to_tensor(prepared.fg[chunk]), to_tensor(bound_np)
            support = to_tensor(prepared.support[chunk]) > 0
            view = self._eot_view("perturb", *prepared.keys[chunk])  # seeded by the slices: any split of cases
            delta = self._attack(x, y, bound, project(to_tensor(init_np), x, bound), support, view)
            out[chunk] = delta.squeeze(1).numpy()
        return finalize(out, prepared.bound)

    def state_dict(self) -> dict[str, Any]:
        """Surrogate weights as ``surrogate.{i}.{name}`` plain tensors (empty before fitting)."""
        state: dict[str, Any] = {}
        for index, model in enumerate(self.models):
            state.update(plain_state(model, f"surrogate.{index}"))
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Rebuild the surrogate(s) from :meth:`state_dict` output.

        Raises:
            ConfigError: no surrogate weights in ``state`` or weights that do not fit the surrogate.
        """
        indices = sorted({int(key.split(".")[1]) for key in state if key.startswith("surrogate.")})
        if not indices:
            raise ConfigError(f"method '{self.name}': the state holds no surrogate weights")
        models = []
        for index in indices:
            model = make_surrogate(seed=0)
            try:
                model.load_state_dict(sub_state(state, f"surrogate.{index}"))
            except RuntimeError as error:
                raise ConfigError(f"method '{self.name}': surrogate weights do not fit ({error})") from error
            model.eval()
            models.append(model)
        self.models = models
