"""The base of the model-free protectors (LSP, AR, random): settings checked at construction, nothing to fit.

Imports no torch.
"""

from __future__ import annotations

from typing import Any, ClassVar

from umed.protectors.base import Budget, ProgressCallback, Protector, SliceBatch
from umed.protectors.settings import check_budget, resolve_settings

__all__ = ["ModelFreeProtector"]


class ModelFreeProtector(Protector):
    """A protector whose pattern comes from its seed alone.

    Subclasses set ``name``, ``SETTINGS`` and ``FIT_NOTE`` (what the progress line says instead of training), and may
    add to the fit log with :meth:`_fit_log`.
    """

    FIT_NOTE: ClassVar[str] = "nothing to fit"
    SETTINGS: ClassVar[dict[str, Any]] = {}

    def __init__(self, budget: Budget, *, seed: int = 0, **settings: Any) -> None:
        check_budget(self.name, budget)
        super().__init__(budget, seed=int(seed), **resolve_settings(self.name, self.SETTINGS, settings))

    def fit(self, batch: SliceBatch, *, progress: ProgressCallback | None = None) -> dict[str, Any]:
        """Nothing to learn: the pattern comes from the seed."""
        if progress is not None:
            progress(f"{self.name}: {self.FIT_NOTE}", 1, 1)
        return {"model_free": True, **self._fit_log()}

    def _fit_log(self) -> dict[str, Any]:
        return {}
