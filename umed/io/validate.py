"""Check a case before anything is computed or written: readable image and mask, matching geometry, finite values.

Every problem raises a :class:`umed.errors.InputError` (or its :class:`~umed.errors.GeometryError` subclass) whose
message starts with the offending file: ``"{path}: {problem} (expected {x}, got {y})"``. Validation never writes.

Policies:

- a 4D NIfTI with a singleton 4th dimension is squeezed to 3D; more channels or time points are refused, since umed
  protects one channel per file (split them into separate files as nnU-Net's ``_0000``/``_0001`` files do);
- an empty mask (no label > 0) is *not* an error: the case is returned and callers warn and pass it through
  unchanged (see :func:`mask_is_empty`);
- a missing mask, NaN/Inf voxels, non-integer or negative labels and geometry mismatches are errors.
"""

from __future__ import annotations

import numpy as np

from umed.case import Case, CaseMeta
from umed.errors import InputError
from umed.io.dataset import load_case, load_mask

__all__ = ["validate_case", "mask_is_empty", "check_finite"]


def mask_is_empty(mask: np.ndarray) -> bool:
    """True when the label map holds no label other than 0 (nothing to protect).

    Args:
        mask: integer label map, any shape.
    """
    return not bool(np.any(np.asarray(mask) != 0))


def check_finite(array: np.ndarray, path: object) -> None:
    """Raise when a float image holds NaN or Inf voxels.

    Args:
        array: image in file units, any shape.
        path: the file named in the message.

    Raises:
        InputError: at least one voxel is NaN or Inf (the message gives their count, never values).
    """
    array = np.asarray(array)
    if array.dtype.kind not in "fc":
        return
    finite = np.isfinite(array)
    if not finite.all():
        raise InputError(f"{path}: NaN or Inf voxels (expected finite values, got {int(finite.size - finite.sum())} "
                         "non-finite voxels)")


def validate_case(case: Case, *, atol: float = 1e-3) -> tuple[np.ndarray, CaseMeta, np.ndarray, CaseMeta]:
    """Load a case's image and mask and check that they can be protected together.

    Args:
        case: the case (from :func:`umed.io.discover_cases`).
        atol: tolerance (mm) on the image/mask affine and spacing.

    Returns:
        ``(image, image_meta, labels, mask_meta)``: ``image`` in file units (``(X, Y, Z)`` or ``(H, W)``), ``labels``
        an integer array of the same shape (possibly empty: see :func:`mask_is_empty`).

    Raises:
        InputError: missing mask; unreadable or truncated image or mask; more than one channel; NaN/Inf voxels;
            non-integer labels.
        GeometryError: image and mask differ in shape, affine or spacing beyond ``atol``.

    Example:
        >>> image, meta, labels, _ = validate_case(case)  # doctest: +SKIP
        >>> if mask_is_empty(labels):  # doctest: +SKIP
        ...     logger.warning("%s: empty mask, passed through unchanged", case.mask_path)
    """
    if case.mask_path is None:
        raise InputError(f"{case.image_path}: missing mask (expected a label map for case {case.case_id}, got none)")
    image, meta = load_case(case.image_path)
    check_finite(image, case.image_path)
    labels, mask_meta = load_mask(case.mask_path, image_meta=meta, atol=atol)
    if labels.size and labels.dtype.kind == "i" and int(labels.min()) < 0:
        raise InputError(f"{case.mask_path}: negative labels (expected labels >= 0, got {int((labels < 0).sum())} "
                         f"voxels below 0, smallest {int(labels.min())})")
    return image, meta, labels, mask_meta
