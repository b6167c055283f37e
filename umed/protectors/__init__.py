"""Protectors: UMed and the baselines it is compared with, behind one registry.

Every protector implements :class:`~umed.protectors.base.Protector` on batches of 2D slices in umed's normalised
intensity space; :func:`make_protector` builds one by name (the name the CLI, configs and saved protectors use).
"""

from __future__ import annotations

from typing import Any

from umed.registry import Registry
from umed.protectors.ar import ARProtector
from umed.protectors.base import Budget, Protector, SliceBatch
from umed.protectors.em import EMProtector
from umed.protectors.lsp import LSPProtector
from umed.protectors.random import RandomProtector
from umed.protectors.salm import SALMProtector
from umed.protectors.sep import SEPProtector
from umed.protectors.tap import TAPProtector
from umed.protectors.contour_texture import UMedProtector

__all__ = [
    "PROTECTORS",
    "make_protector",
    "Budget",
    "Protector",
    "SliceBatch",
    "UMedProtector",
    "EMProtector",
    "TAPProtector",
    "SEPProtector",
    "SALMProtector",
    "LSPProtector",
    "ARProtector",
    "RandomProtector",
]

PROTECTORS: Registry[type[Protector]] = Registry("method", {
    cls.name: cls
    for cls in (
        UMedProtector,
        EMProtector,
        TAPProtector,
        SEPProtector,
        SALMProtector,
        LSPProtector,
        ARProtector,
        RandomProtector,
    )
})
"""Method name to protector class: ``umed``, ``em``, ``tap``, ``sep``, ``salm``, ``lsp``, ``ar``, ``random``."""


def make_protector(name: str, budget: Budget, *, seed: int = 0, **settings: Any) -> Protector:
    """Build a protector by method name.

    Args:
        name: one of :data:`PROTECTORS` (case-insensitive).
        budget: L-inf budget in normalised units.
        seed: run seed; every random choice derives from it (and the slice key).
        **settings: method settings (see each class); unknown ones are an error.

    Returns:
        An unfitted protector (model-free ones are ready to ``perturb``).

    Raises:
        ConfigError: an unknown method, an unknown or invalid setting, or an invalid budget.

    Example:
        >>> protector = make_protector("lsp", Budget(4 / 255, 4 / 255, 3), seed=1, patch=4)
    """
    return PROTECTORS.get(name)(budget, seed=seed, **settings)
