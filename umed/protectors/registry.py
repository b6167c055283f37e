"""Protectors by method name: the registry the CLI, configs and saved protectors use.

Each entry names the module and class of one method; the class is imported on first use, so listing the methods
(``umed protect --help``) and the model-free methods (``lsp``, ``ar``, ``random``) need no torch.

Example:
    >>> PROTECTORS.names()
    ('umed', 'em', 'tap', 'sep', 'salm', 'lsp', 'ar', 'random', 'tile')
    >>> PROTECTORS.get("LSP").load().__name__
    'LSPProtector'
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from umed.protectors.base import Budget, Protector
from umed.registry import Registry

__all__ = ["ProtectorEntry", "PROTECTORS", "make_protector"]


@dataclass(frozen=True)
class ProtectorEntry:
    """Where one method's class lives: ``module`` (under ``umed.protectors``) and ``class_name``."""

    module: str
    class_name: str

    def load(self) -> type[Protector]:
        """Import the module and return the protector class."""
        cls: type[Protector] = getattr(importlib.import_module(f"umed.protectors.{self.module}"), self.class_name)
        return cls


PROTECTORS: Registry[ProtectorEntry] = Registry(
    "method",
    {
        "umed": ProtectorEntry("contour_texture", "UMedProtector"),
        "em": ProtectorEntry("em", "EMProtector"),
        "tap": ProtectorEntry("tap", "TAPProtector"),
        "sep": ProtectorEntry("sep", "SEPProtector"),
        "salm": ProtectorEntry("salm", "SALMProtector"),
        "lsp": ProtectorEntry("lsp", "LSPProtector"),
        "ar": ProtectorEntry("ar", "ARProtector"),
        "random": ProtectorEntry("random", "RandomProtector"),
        "tile": ProtectorEntry("tile", "LearnedTileProtector"),
    },
)
"""Method name to protector entry: ``umed``, ``em``, ``tap``, ``sep``, ``salm``, ``lsp``, ``ar``, ``random``,
``tile``."""


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
        >>> protector.settings
        {'patch': 4, 'tile': 8}
    """
    return PROTECTORS.get(name).load()(budget, seed=seed, **settings)
