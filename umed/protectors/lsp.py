"""LSP: linearly separable synthetic perturbations (Yu et al., "Availability Attacks Create Shortcuts", KDD 2022),
for segmentation slices.

Model-free. Each "class" gets one random patch-wise constant pattern of signs: one for the structure (ROI) and one
for the background part of the contour band. A pattern is a ``tile x tile`` table of patches of ``patch x patch``
voxels, repeated over the image from its top-left corner, so every image size gets the same pattern; each voxel
takes ``+-eps`` from its class's table (``eps = budget.eps_max * eps_scale``). The tables are drawn from the run
seed when the protector is made; ``fit`` has nothing to learn.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from umed.protectors.base import Budget, SliceBatch, finalize, prepare_slices
from umed.protectors.model_free import ModelFreeProtector
from umed.protectors.seeding import key_rng
from umed.protectors.settings import Setting

__all__ = ["LSPProtector", "patch_pattern"]


def patch_pattern(table: np.ndarray, shape: tuple[int, int], patch: int) -> np.ndarray:
    """Repeat a ``(T, T)`` table of patch values over an image from its top-left corner.

    Voxel ``(h, w)`` gets ``table[h // patch % T, w // patch % T]``.

    Shape:
        ``table (T, T) -> (H, W)`` of the table's dtype.
    """
    rows = (np.arange(shape[0]) // patch) % table.shape[0]
    cols = (np.arange(shape[1]) // patch) % table.shape[1]
    return table[rows[:, None], cols[None, :]]


class LSPProtector(ModelFreeProtector):
    """Class-wise patch patterns of ``+-eps``: one for the ROI, one for the band outside it (Yu et al., KDD 2022).

    Settings (all optional; defaults in ``umed/configs/methods/lsp.yaml``):
        patch: patch side in voxels.
        tile: patches per side of the repeating table.

    Example:
        Every changed voxel moves by exactly the budget, up or down:

        >>> import numpy as np
        >>> from umed.protectors import Budget, SliceBatch, make_protector
        >>> disk = np.hypot(*np.mgrid[-12:12, -12:12]) < 6
        >>> delta = make_protector("lsp", Budget(), seed=0).perturb(SliceBatch(disk[None] * 0.5, disk[None], ["a/0"]))
        >>> sorted({float(v) for v in np.unique(delta)}) == [-np.float32(8 / 255), 0.0, np.float32(8 / 255)]
        True
    """

    name = "lsp"
    FIT_NOTE = "patterns drawn from the seed"
    SETTINGS = {"patch": Setting(int, low=1), "tile": Setting(int, low=1)}

    def __init__(self, budget: Budget, *, seed: int = 0, **settings: Any) -> None:
        super().__init__(budget, seed=seed, **settings)
        self.tables = _sign_tables(key_rng(self.seed, self.name, "pattern"), self.settings["tile"])
        """``(2, tile, tile)`` signs: index 0 the ROI pattern, 1 the band-background pattern."""

    def perturb(self, batch: SliceBatch) -> np.ndarray:
        """``(B, H, W)`` float32: the ROI pattern on the structure, the background pattern on the rest of the band."""
        prepared = prepare_slices(batch, self.budget)
        shape = prepared.images.shape[1:]
        roi = patch_pattern(self.tables[0], shape, self.settings["patch"])
        background = patch_pattern(self.tables[1], shape, self.settings["patch"])
        signs = np.where(prepared.fg, roi[None], background[None])
        return finalize(signs * prepared.bound, prepared.bound)


def _sign_tables(rng: np.random.Generator, tile: int) -> np.ndarray:
    """Two different ``(tile, tile)`` tables of random signs (a 1x1 table would otherwise match half the time)."""
    while True:
        tables = np.where(rng.random((2, tile, tile)) < 0.5, -1.0, 1.0).astype(np.float32)
        if not np.array_equal(tables[0], tables[1]):
            return tables
