"""Where probe marks go: disks of healthy tissue, away from the structure.

A slot is a disk of ``radius`` voxels in one slice (the last axis of a volume; a 2D image is one slice) whose every
voxel is tissue (normalised intensity above ``tissue_threshold``) and at least ``margin`` voxels from the structure.
Slots of one slice are at least ``gap`` voxels apart (edge to edge), so one slot's mark barely reaches the next one's
receptive field centre. The pick is seeded.

Example:
    >>> import numpy as np
    >>> image = np.full((64, 64, 2), 0.5, np.float32); structure = np.zeros(image.shape, bool)
    >>> structure[:10, :10, :] = True
    >>> slots = find_slots(image, structure, radius=5, rng=np.random.default_rng(0))
    >>> len(slots) > 4, all(s.row >= 5 and s.col >= 5 for s in slots)
    (True, True)
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
from scipy import ndimage

__all__ = ["Slot", "disk", "find_slots"]


class Slot(NamedTuple):
    """One disk: slice ``z`` (0 for a 2D image), centre ``(row, col)``, ``radius`` voxels (an immutable record)."""

    z: int
    row: int
    col: int
    radius: int

    def box(self) -> tuple[slice, slice]:
        """The disk's in-plane bounding box."""
        r = self.radius
        return slice(self.row - r, self.row + r + 1), slice(self.col - r, self.col + r + 1)


@functools.lru_cache(maxsize=16)
def disk(radius: int) -> np.ndarray:
    """Bool ``(2r+1, 2r+1)`` Euclidean disk (one read-only array per radius: scoring asks for it once a slot)."""
    axis = np.arange(-radius, radius + 1)
    footprint = (axis[:, None] ** 2 + axis[None, :] ** 2) <= radius * radius
    footprint.flags.writeable = False
    return footprint


def find_slots(
    image_unit: np.ndarray,
    structure: np.ndarray,
    *,
    radius: int,
    rng: np.random.Generator,
    margin: int = 4,
    gap: int = 6,
    tissue_threshold: float = 0.1,
    max_per_slice: int = 12,
) -> list[Slot]:
    """Non-overlapping disk slots in the tissue of one case (see the module docstring).

    Args:
        image_unit: ``(H, W)`` or ``(X, Y, Z)`` in normalised units (the case's own mapping).
        structure: bool, same shape.
        radius: disk radius, voxels.
        rng: seeded generator (the order of the candidates).
        margin: least distance from the structure, voxels.
        gap: least distance between two disks of a slice, edge to edge, voxels.
        tissue_threshold: least normalised intensity of every disk voxel.
        max_per_slice: at most this many slots per slice.

    Returns:
        Slots in slice order.
    """
    image = image_unit[..., None] if image_unit.ndim == 2 else image_unit
    struct = structure[..., None] if structure.ndim == 2 else structure
    footprint = disk(radius)
    near = disk(margin + radius)
    slots: list[Slot] = []
    spacing = 2 * radius + gap
    for z in range(image.shape[-1]):
        tissue = image[..., z] > tissue_threshold
        if not tissue.any():
            continue
        allowed = ndimage.binary_erosion(tissue, footprint, border_value=0)
        if struct[..., z].any():
            allowed &= ~ndimage.binary_dilation(struct[..., z], near)
        candidates = np.argwhere(allowed[::radius, ::radius]) * radius
        if len(candidates) == 0:
            continue
        chosen: list[np.ndarray] = []
        for index in rng.permutation(len(candidates)):
            centre = candidates[index]
            if all(np.sum((centre - other) ** 2) >= spacing * spacing for other in chosen):
                chosen.append(centre)
                if len(chosen) == max_per_slice:
                    break
        slots.extend(Slot(z, int(c[0]), int(c[1]), radius) for c in sorted(chosen, key=tuple))
    return slots
