"""Random training crops that hold structure, cut from several aligned slice arrays at once (numpy only).

Example:
    >>> import numpy as np
    >>> fg = np.zeros((2, 40, 40), dtype=bool)
    >>> fg[:, 10:14, 20:24] = True
    >>> sampler = CropSampler({"fg": fg}, crop=16)
    >>> crops = sampler.sample(np.random.default_rng(0), 4)
    >>> crops.take(sampler.arrays["fg"]).shape, bool(crops.take(sampler.arrays["fg"]).any(axis=(1, 2)).all())
    ((4, 16, 16), True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["CropBatch", "CropSampler"]


@dataclass
class CropBatch:
    """Where a training batch was cut: slice index, top-left corner and flips of each crop."""

    index: np.ndarray
    top: np.ndarray
    left: np.ndarray
    flip_h: np.ndarray
    flip_w: np.ndarray
    size: int

    def _window(self, b: int) -> tuple[slice, slice]:
        return slice(self.top[b], self.top[b] + self.size), slice(self.left[b], self.left[b] + self.size)

    def _flip(self, b: int, crop: np.ndarray) -> np.ndarray:
        if self.flip_h[b]:
            crop = crop[::-1]
        if self.flip_w[b]:
            crop = crop[:, ::-1]
        return crop

    def take(self, array: np.ndarray, *, selected: bool = False) -> np.ndarray:
        """Cut the crops out of ``array`` ``(N, H, W)`` (or ``(B, H, W)`` already indexed, ``selected=True``).

        Returns:
            ``(B, size, size)``, flipped as the batch was.
        """
        out = []
        for b in range(len(self.index)):
            source = array[b] if selected else array[self.index[b]]
            rows, cols = self._window(b)
            out.append(self._flip(b, source[rows, cols]))
        return np.ascontiguousarray(np.stack(out))

    def put(self, array: np.ndarray, values: np.ndarray) -> None:
        """Write crops ``(B, size, size)`` back into ``array`` ``(N, H, W)`` in place (flips undone)."""
        for b in range(len(self.index)):
            rows, cols = self._window(b)
            array[self.index[b], rows, cols] = self._flip(b, values[b])


class CropSampler:
    """Random square crops of training slices, each containing structure when the slice has any.

    Slices smaller than the crop are zero-padded (structure False) at the bottom and right once, up front. A crop
    of a slice with structure is placed uniformly among the windows that contain one randomly chosen structure
    voxel, so small structures (a tumour is 1 to 2% of a brain slice) are seen at every step. Flips (up-down and
    left-right, each with probability 1/2) stand for the victim's augmentation.

    Args:
        arrays: name to ``(N, H, W)`` arrays cut together; must contain ``"fg"`` (bool).
        crop: crop side in voxels.
        flips: whether to flip.
    """

    def __init__(self, arrays: dict[str, np.ndarray], *, crop: int, flips: bool = True) -> None:
        fg = arrays["fg"]
        n, height, width = fg.shape
        pad_h, pad_w = max(0, crop - height), max(0, crop - width)
        self.arrays = {
            name: np.pad(a, ((0, 0), (0, pad_h), (0, pad_w))) if (pad_h or pad_w) else a for name, a in arrays.items()
        }
        self.crop = int(crop)
        self.flips = bool(flips)
        self.count = n
        self.shape = (height + pad_h, width + pad_w)
        self._fg_voxels = [np.flatnonzero(self.arrays["fg"][i]) for i in range(n)]

    def sample(self, rng: np.random.Generator, batch_size: int) -> CropBatch:
        """Draw ``batch_size`` crops (slices drawn with replacement)."""
        height, width = self.shape
        size = self.crop
        index = rng.integers(0, self.count, size=batch_size)
        top = np.zeros(batch_size, dtype=np.int64)
        left = np.zeros(batch_size, dtype=np.int64)
        for b, i in enumerate(index):
            voxels = self._fg_voxels[i]
            if voxels.size:
                row, col = divmod(int(voxels[rng.integers(0, voxels.size)]), width)
                top[b] = rng.integers(max(0, row - size + 1), min(row, height - size) + 1)
                left[b] = rng.integers(max(0, col - size + 1), min(col, width - size) + 1)
            else:
                top[b] = rng.integers(0, height - size + 1)
                left[b] = rng.integers(0, width - size + 1)
        if self.flips:
            flip_h, flip_w = rng.random(batch_size) < 0.5, rng.random(batch_size) < 0.5
        else:
            flip_h = flip_w = np.zeros(batch_size, dtype=bool)
        return CropBatch(index, top, left, flip_h, flip_w, size)

    def tensor(self, crops: CropBatch, name: str) -> torch.Tensor:
        """The crops of one named array as a ``(B, 1, size, size)`` float32 tensor (imports torch)."""
        from umed.protectors.surrogate import to_tensor

        return to_tensor(crops.take(self.arrays[name]))
