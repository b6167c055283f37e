"""Protectors: UMed and the baselines it is compared with, behind one registry.

Every protector implements :class:`~umed.protectors.base.Protector` on batches of 2D slices in umed's normalised
intensity space; :func:`make_protector` builds one by name (the name the CLI, configs and saved protectors use).
The protector classes are imported on first use: ``import umed.protectors`` and the model-free methods (``lsp``,
``ar``, ``random``) need no torch.

Modules: ``base`` (the interface, budget, slice batches), ``settings``, ``seeding``, ``crops`` (no torch);
``surrogate`` (the surrogate U-Net), ``pgd``, ``surrogate_training``, ``surrogate_protector`` (the base of EM, TAP,
SEP, SALM), ``networks`` (UMed's generators); one module per method (``contour_texture`` is UMed).
"""

from __future__ import annotations

from typing import Any

from umed.protectors.base import Budget, Protector, SliceBatch
from umed.protectors.registry import PROTECTORS, make_protector

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

_CLASSES = {entry.class_name: entry for entry in PROTECTORS.values()}


def __getattr__(name: str) -> Any:
    if name in _CLASSES:
        return _CLASSES[name].load()
    raise AttributeError(f"module 'umed.protectors' has no attribute {name!r}")
