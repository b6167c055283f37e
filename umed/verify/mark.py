"""The keyed mark that ``umed protect`` writes: the key's field on the structure, slice by slice.

:func:`mark_slices` gives the unit mark of a batch of slices (the key's field, anchored at voxel (0, 0) of every
slice, times the structure); :func:`combine` mixes it with a protector's perturbation at the key's energy share. The
per-case budget (exact PSNR, L-inf cap) is then applied to the sum by :func:`umed.apply.protect_array`, so the mark
and the protection share one budget.

Example:
    >>> import numpy as np
    >>> from umed.verify.family import MarkFamily
    >>> from umed.verify.key import MarkKey
    >>> key = MarkKey(seed=3, family=MarkFamily(kind="edge"), share=1.0)
    >>> structure = np.zeros((1, 8, 8), bool); structure[0, 2:6, 2:6] = True
    >>> mark = mark_slices(key, structure)
    >>> bool((mark[~structure] == 0).all()), float(np.abs(mark).max()) <= 1.0
    (True, True)
"""

from __future__ import annotations

import math

import numpy as np

from umed.verify.key import MarkKey

__all__ = ["combine", "mark_slices"]


def mark_slices(key: MarkKey, structures: np.ndarray) -> np.ndarray:
    """The unit mark ``(B, H, W)`` float32 of a batch of slices: the key's field where ``structures`` is true, 0
    elsewhere."""
    field = key.family.field(key.seed, structures.shape[-2:])
    return (field[None] * structures).astype(np.float32)


def combine(protection: np.ndarray, mark: np.ndarray, share: float, eps: float) -> np.ndarray:
    """``protection`` (normalised units, within ``[-eps, eps]``) and the unit ``mark`` mixed so that the mark holds
    ``share`` of the energy (``share`` 1: the mark alone at amplitude ``eps``), clipped to ``[-eps, eps]``.

    With no protection energy the mark gets the amplitude ``eps``; the caller's exact-PSNR rescale sets the final
    level.
    """
    mark = mark.astype(np.float32) * np.float32(eps)
    if share >= 1:
        return mark
    e_protection = float(np.sum(protection.astype(np.float64) ** 2))
    e_mark = float(np.sum(mark.astype(np.float64) ** 2))
    if e_mark == 0 or e_protection == 0:
        return protection.astype(np.float32) if e_mark == 0 else mark
    weight = math.sqrt(share / (1 - share) * e_protection / e_mark)
    return np.clip(protection + np.float32(weight) * mark, -eps, eps).astype(np.float32)
