"""The one check every writer makes before it writes: the array has the shape of the case it is written as."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from umed.case import CaseMeta
from umed.errors import GeometryError

__all__ = ["case_array"]


def case_array(array: Any, meta: CaseMeta, target: Path) -> np.ndarray:
    """``array`` as a numpy array, checked to have ``meta.shape``.

    Raises:
        GeometryError: another shape (the message names ``target``, the file being written).
    """
    array = np.asarray(array)
    if tuple(array.shape) != tuple(meta.shape):
        raise GeometryError(
            f"{target}: array shape differs from the case's (expected {tuple(meta.shape)}, got {array.shape})"
        )
    return array
