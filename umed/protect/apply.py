"""Apply a fitted protector to one image array in file units: the per-case budget, the slice-by-slice perturbation,
the exact-PSNR rescale, and the write-back to values the file's dtype can store.

The data flow of one case is ``image (file units) -> structure slices -> budget (case_eps_scale) -> protector
(normalised units) -> rescale to the PSNR target (exact_psnr_scale) -> file units (add_in_file_units) -> guarantees``;
:func:`protect_array` runs it, and :mod:`umed.protect.case` (a case of ``umed protect``) and
:mod:`umed.transforms` (the MONAI transform) both call it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from umed.case import CaseMeta
from umed.errors import ProtectorError
from umed.metrics import bounding_box
from umed.protect.threads import fixed_threads
from umed.protectors.base import Budget, Protector, SliceBatch

__all__ = [
    "ProtectedArray",
    "as_volume",
    "case_eps_scale",
    "exact_psnr_scale",
    "protect_array",
    "structure_slices",
    "support_box",
]


@dataclass(frozen=True)
class ProtectedArray:
    """Result of :func:`protect_array`.

    Attributes:
        array: protected image in file units, same shape as the input, values the file's dtype can store exactly.
        eps: the L-inf budget that applied, normalised units (after the per-case scale).
        eps_scale: the per-case multiplier of the protector's budget.
        changed_slices: indices (last axis) of the slices that were perturbed.
        support: :func:`support_box` of the structure (computed once; the change metrics read it again).
    """

    array: np.ndarray
    eps: float
    eps_scale: float
    changed_slices: tuple[int, ...]
    support: tuple[tuple[slice, ...], np.ndarray | None] | None = None


def as_volume(array: np.ndarray) -> np.ndarray:
    """View a 2D image ``(H, W)`` as a one-slice volume ``(H, W, 1)``; volumes pass unchanged."""
    return array[..., None] if array.ndim == 2 else array


def structure_slices(labels: np.ndarray, structure_labels: Sequence[int] | None) -> tuple[np.ndarray, list[int]]:
    """The structure mask and the indices along the last axis of the slices that contain it.

    Args:
        labels: integer label map ``(H, W)`` or ``(X, Y, Z)``.
        structure_labels: the labels that form the structure; ``None`` means every label > 0.

    Returns:
        ``(structure, slice_indices)``: a bool array of the input's shape, and the slices (last axis; ``[0]`` for 2D)
        holding at least one structure voxel.
    """
    from umed.regions import foreground

    structure = foreground(labels, structure_labels)
    volume = as_volume(structure)
    indices = [int(z) for z in np.flatnonzero(volume.any(axis=tuple(range(volume.ndim - 1))))]  # any memory order
    return structure, indices


def case_eps_scale(
    structure: np.ndarray,
    budget: Budget,
    *,
    target_psnr: float | None,
    eps_cap: float,
    support: tuple[tuple[slice, ...], np.ndarray | None] | None = None,
) -> float:
    """Per-case multiplier of the budget so that the case keeps ``target_psnr`` (dB, data_range 1), before the
    protector has run.

    The bound assumes the worst case, every voxel of the support changed by the full budget, so a perturbation
    within it keeps at least the target: ``eps = sqrt(10 ** (-target / 10) * N / N_support)``, capped at ``eps_cap``.
    Protectors train at this scale; :func:`protect_array` then rescales the perturbation it actually produced so that
    the case meets the target exactly (see :func:`exact_psnr_scale`).
    The support is the structure plus its contour band, computed slice by slice as the protector sees it.
    ``target_psnr=None`` keeps the protector's budget (scale 1).

    Args:
        structure: bool ``(H, W)`` or ``(X, Y, Z)``.
        budget: the protector's budget (its ``eps_max`` is what the scale multiplies).
        target_psnr: dB over the whole image (per volume for 3D, per image for 2D), or ``None``.
        eps_cap: largest allowed budget, normalised units.
        support: :func:`support_box` of ``structure`` when already computed.

    Returns:
        The scale (``> 0``); ``1.0`` when there is no target or no structure.
    """
    if target_psnr is None:
        return 1.0
    _, allowed = support_box(structure, budget.band_width) if support is None else support
    n_support = int(allowed.sum()) if allowed is not None else 0
    if n_support == 0:
        return 1.0
    eps = math.sqrt(10 ** (-target_psnr / 10) * structure.size / n_support)
    return min(eps, eps_cap) / budget.eps_max


def support_box(structure: np.ndarray, band_width: int) -> tuple[tuple[slice, ...], np.ndarray | None]:
    """The support (structure plus its contour band, slice by slice along the last axis) inside its bounding box.

    Returns ``(box, allowed)``: ``box`` indexes the structure's volume view (``(H, W, 1)`` for 2D), ``allowed`` the
    bool support there (``None`` without structure). The support of a slice is its structure dilated by the band in
    the slice's plane, so the box is the structure's bounding box grown in-plane by the band width (clipped), and
    computing it there gives the same voxels as on the whole slice (the dilation only looks ``band_width`` away).
    """
    from umed.regions import support

    volume = as_volume(structure)
    box = bounding_box(volume)
    if box is None:
        return (), None
    grown = tuple(
        slice(max(b.start - band_width, 0), min(b.stop + band_width, n)) if axis < 2 else b
        for axis, (b, n) in enumerate(zip(box, volume.shape))
    )
    slices = np.moveaxis(volume[grown], -1, 0)
    allowed = np.stack(
        [support(slices[k], band_width) if slices[k].any() else np.zeros_like(slices[k]) for k in range(len(slices))],
        axis=-1,
    )
    return grown, allowed


def exact_psnr_scale(sum_squares: float, n_voxels: int, eps: float, *, target_psnr: float, eps_cap: float) -> float:
    """Factor by which to multiply a perturbation of total squared change ``sum_squares`` (normalised units, over an
    image of ``n_voxels``) so that the image's PSNR equals ``target_psnr``, with its L-inf bound ``eps`` times the
    factor kept at most ``eps_cap``.

    Every protector's perturbation is linear in its budget (``eps * tanh(...)``, ``eps * sign(...)``), so multiplying
    the perturbation is the same as running the protector with that budget. A protector that does not use its whole
    bound everywhere (UMed's texture bound ``eps * tau(x)``, sparse methods) thereby gets the budget the PSNR target
    allows instead of wasting it.

    Returns:
        The factor (``1.0`` when nothing changed).

    Example:
        >>> round(exact_psnr_scale(1e-5 * 100, 100, 0.01, target_psnr=60.0, eps_cap=1.0), 4)  # 50 dB -> 60 dB
        0.3162
    """
    if sum_squares <= 0 or eps <= 0:
        return 1.0
    # 1e-4 below the exact factor (0.001 dB): float rounding of the written values must not land under the target
    factor = math.sqrt(10 ** (-target_psnr / 10) * n_voxels / sum_squares) * (1 - 1e-4)
    return min(factor, eps_cap / eps)


def _truncated_psnr_factor(
    deltas: Sequence[np.ndarray],
    n_voxels: int,
    eps: float,
    span: float,
    slope: float,
    start: float,
    *,
    target_psnr: float,
    eps_cap: float,
) -> float:
    """The largest factor (at most ``eps_cap / eps``, at least ``start``) whose perturbation, computed as
    :func:`protect_array` writes it (float32 scaling and clipping, then truncation toward zero to whole stored units
    of ``slope`` file units, ``span`` file units per normalised unit), keeps the image at or above ``target_psnr``."""
    target = 10 ** (-target_psnr / 10) * n_voxels
    flat = np.concatenate([d.ravel() for d in deltas]).astype(np.float32)
    flat = flat[flat != 0]

    def sse(factor: float) -> float:
        bound = eps * factor * (1 - 1e-5)
        scaled = np.clip(flat * np.float32(factor), -bound, bound).astype(np.float64)
        steps = np.trunc(scaled * span / slope)
        return float(np.sum((steps * slope / span) ** 2))

    low, high = start, max(start, eps_cap / eps)
    if sse(high) <= target:
        return high
    if sse(low) > target:
        return low
    for _ in range(40):
        middle = 0.5 * (low + high)
        low, high = (middle, high) if sse(middle) <= target else (low, middle)
    return low


def _integer_info(dtype: np.dtype) -> np.iinfo | None:
    return np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None


def _add_in_file_units(original: np.ndarray, delta_file: np.ndarray, meta: CaseMeta) -> np.ndarray:
    """``original + delta`` rounded toward the original to values the file can store, so ``|change| <= |delta|``.

    For integer on-disk dtypes the change is truncated to whole stored units (slope), never rounded up, and the
    result is clipped to the dtype's range; float dtypes are cast to their precision.
    """
    info = _integer_info(np.dtype(meta.disk_dtype))
    if info is None:
        return (original.astype(np.float64) + delta_file).astype(meta.disk_dtype).astype(original.dtype, copy=False)
    slope = meta.slope or 1.0
    steps = np.trunc(delta_file / slope)
    stored = np.rint((original.astype(np.float64) - meta.intercept) / slope) + steps
    stored = np.clip(stored, info.min, info.max)
    return (stored * slope + meta.intercept).astype(original.dtype, copy=False)


def protect_array(
    image: np.ndarray,
    labels: np.ndarray,
    meta: CaseMeta,
    protector: Protector,
    *,
    mapping: Any,
    structure_labels: Sequence[int] | None = None,
    target_psnr: float | None = None,
    eps_cap: float = 16 / 255,
    batch_size: int = 16,
    mark: Any = None,
) -> ProtectedArray:
    """Apply a fitted protector to one image.

    Works slice by slice along the last axis and only on the slices that contain the structure, so memory stays
    at a copy of the image plus one batch of slices. Outside the structure and its contour band the output is the
    input, bit for bit.

    Args:
        image: ``(H, W)`` or ``(X, Y, Z)`` in file units (as :func:`umed.io.load_case` returns it).
        labels: integer label map of the same shape.
        meta: the image's :class:`CaseMeta` (on-disk dtype, slope, intercept, case id).
        protector: a fitted protector.
        mapping: the :class:`umed.intensity.IntensityMapping` fitted on this image.
        structure_labels: the labels that form the structure (``None``: every label > 0).
        target_psnr: per-case budget rule: the protector runs at :func:`case_eps_scale`, then its perturbation is
            rescaled so the case's PSNR (normalised space, whole image) is exactly the target
            (:func:`exact_psnr_scale`) or its L-inf bound reaches ``eps_cap``; writing can only raise the PSNR.
        eps_cap: cap of the per-case budget, normalised units.
        batch_size: slices per forward pass.
        mark: a :class:`umed.verify.MarkKey`: its keyed mark is mixed into the perturbation at the key's energy share
            (:func:`umed.verify.mark.combine`; share 1: the mark alone, the protector is not run), inside the same
            per-case budget. ``None``: no mark.

    Returns:
        A :class:`ProtectedArray`; its array has the input's shape and dtype.
    """
    structure, indices = structure_slices(labels, structure_labels)
    support = support_box(structure, protector.budget.band_width)
    scale = case_eps_scale(structure, protector.budget, target_psnr=target_psnr, eps_cap=eps_cap, support=support)
    eps = protector.budget.eps_max * scale
    if not indices:
        return ProtectedArray(image.copy(order="K"), eps, scale, (), support)
    chunks = [indices[start : start + batch_size] for start in range(0, len(indices), batch_size)]
    span = float(mapping.high - mapping.low)
    with fixed_threads():  # the same bytes with any torch thread count (serial, workers, OMP_NUM_THREADS)
        deltas = _perturb_slices(
            image, structure, chunks, protector, mapping, case_id=meta.case_id, scale=scale, eps=eps, mark=mark
        )
    if target_psnr is not None:  # spend exactly the budget the PSNR target allows
        factor = _target_factor(deltas, image.size, eps, span, meta, target_psnr=target_psnr, eps_cap=eps_cap)
        eps, scale = eps * factor, scale * factor
        headroom = eps * (1 - 1e-5)  # so float32 rounding of the written value cannot land past the bound
        deltas = [np.clip(d * np.float32(factor), -headroom, headroom) for d in deltas]
    del structure  # peak memory: the output is allocated after the generator passes
    out = _write_in_file_units(image, deltas, chunks, meta, span)
    _give_back_overshoot(image, out, chunks, eps * span)
    return ProtectedArray(out, eps, scale, tuple(indices), support)


def _perturb_slices(
    image: np.ndarray,
    structure: np.ndarray,
    chunks: Sequence[list[int]],
    protector: Protector,
    mapping: Any,
    *,
    case_id: str,
    scale: float,
    eps: float,
    mark: Any = None,
) -> list[np.ndarray]:
    """The protector's perturbation of each chunk of slices, ``(len(chunk), H, W)`` float32 in normalised units,
    clipped to ``[-eps, eps]``, with the keyed ``mark`` mixed in (see :func:`protect_array`)."""
    image_volume, structure_volume = as_volume(image), as_volume(structure)
    deltas: list[np.ndarray] = []
    for chunk in chunks:
        if mark is not None and mark.share >= 1:  # the mark alone: no protector pass
            from umed.verify.mark import mark_slices

            structures = np.stack([structure_volume[..., z] for z in chunk])
            deltas.append(np.clip(mark_slices(mark, structures) * np.float32(eps), -eps, eps))
            continue
        unit = mapping.to_unit(np.stack([image_volume[..., z] for z in chunk])).astype(np.float32)
        batch = SliceBatch(
            images=unit,
            structures=np.stack([structure_volume[..., z] for z in chunk]),
            keys=[f"{case_id}/{z}" for z in chunk],
            eps_scale=np.full(len(chunk), scale, dtype=np.float32),
        )
        delta = protector.perturb(batch).astype(np.float32)
        if not np.isfinite(delta).all():  # np.clip keeps NaN: a diverged fit must never be written as "protected"
            raise ProtectorError(
                f"{case_id}: the {protector.name} protector produced non-finite changes on slices "
                f"{chunk[0]}-{chunk[-1]} "
                "(expected finite values; the fit has probably diverged: refit with other settings)"
            )
        delta = np.clip(delta, -eps, eps)
        if mark is not None:
            from umed.verify.mark import combine, mark_slices

            delta = combine(delta, mark_slices(mark, batch.structures), mark.share, eps)
        deltas.append(delta)
    return deltas


def _target_factor(
    deltas: Sequence[np.ndarray],
    n_voxels: int,
    eps: float,
    span: float,
    meta: CaseMeta,
    *,
    target_psnr: float,
    eps_cap: float,
) -> float:
    """The factor that brings the perturbation to ``target_psnr`` as it will be written (after integer truncation
    when the file stores integers)."""
    sum_squares = float(sum(np.sum(d.astype(np.float64) ** 2) for d in deltas))
    factor = exact_psnr_scale(sum_squares, n_voxels, eps, target_psnr=target_psnr, eps_cap=eps_cap)
    if _integer_info(np.dtype(meta.disk_dtype)) is not None:  # integer storage truncates each change toward 0
        factor = _truncated_psnr_factor(
            deltas, n_voxels, eps, span, meta.slope or 1.0, factor, target_psnr=target_psnr, eps_cap=eps_cap
        )
    return factor


def _write_in_file_units(
    image: np.ndarray, deltas: Sequence[np.ndarray], chunks: Sequence[list[int]], meta: CaseMeta, span: float
) -> np.ndarray:
    """A copy of ``image`` with each chunk's perturbation added in file units (values the file can store)."""
    image_volume = as_volume(image)
    out = image.copy(order="K")  # keeps the memory order: a Fortran-ordered CT copied to C order took 2.8 s
    out_volume = as_volume(out)
    for chunk, delta in zip(chunks, deltas):
        original = np.stack([image_volume[..., z] for z in chunk])
        # no clipping to the percentile window [0, 1]: it is not a physical range, and clipping there took half the
        # pattern away from the brightest part of a structure (enhancing tumour), where a victim's real features
        # live; the file's dtype range is kept by _add_in_file_units
        protected = _add_in_file_units(original, delta.astype(np.float64) * span, meta)
        for index, z in enumerate(chunk):
            out_volume[..., z] = protected[index]
    if meta.header is not None:  # a real file's metadata: snap to what it stores (per-slice DICOM rescale, BitsStored)
        from umed.io import quantize_slices

        out = quantize_slices(out, meta, chunks).astype(image.dtype, copy=False)
    return out


def _give_back_overshoot(image: np.ndarray, out: np.ndarray, chunks: Sequence[list[int]], bound: float) -> None:
    """In place: a voxel of ``out`` whose change exceeds ``bound`` (file units) after rounding (another slice's
    rescale, float precision) gets the input's value back; only the perturbed slices can differ from the input
    (quantize is the identity on loaded values)."""
    image_volume, out_volume = as_volume(image), as_volume(out)
    for chunk in chunks:
        before, after = image_volume[..., chunk], out_volume[..., chunk]
        overshoot = np.abs(after.astype(np.float64) - before) > bound * (1 + 1e-9)
        after[overshoot] = before[overshoot]
        out_volume[..., chunk] = after
