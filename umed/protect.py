"""``umed protect``: fit a protector on a dataset (or load one), apply it to every case, write each case back in its
own format, and keep a manifest that makes the run auditable and resumable.

The work is split into plain functions so that the MONAI transform (:mod:`umed.transforms`) and the CLI share them:

- :func:`case_eps_scale` turns a target PSNR into a per-case budget;
- :func:`protect_array` applies a fitted protector to one image array in file units, slice by slice and only where
  there is structure, and returns the protected array in the same units, already representable in the file's dtype;
- :func:`protect_dataset` runs the batch.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from umed.case import Case, CaseMeta, CaseResult
from umed.metrics import bounding_box, changed_box
from umed.errors import ConfigError, UmedError
from umed.protectors.base import Budget, ProgressCallback, Protector, SliceBatch
from umed.settings import ProtectConfig

__all__ = [
    "ProtectedArray",
    "ProtectSummary",
    "case_eps_scale",
    "exact_psnr_scale",
    "protect_array",
    "protect_dataset",
    "structure_slices",
]

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
PROTECTOR_NAME = "protector.json"


@dataclass(frozen=True)
class ProtectedArray:
    """Result of :func:`protect_array`.

    Attributes:
        array: protected image in file units, same shape as the input, values the file's dtype can store exactly.
        eps: the L-inf budget that applied, normalised units (after the per-case scale).
        eps_scale: the per-case multiplier of the protector's budget.
        changed_slices: indices (last axis) of the slices that were perturbed.
    """

    array: np.ndarray
    eps: float
    eps_scale: float
    changed_slices: tuple[int, ...]


@dataclass
class ProtectSummary:
    """What a protect run did: one :class:`CaseResult` per case, the protector's JSON and the manifest path."""

    results: list[CaseResult]
    manifest_path: Path
    protector_path: Path | None
    protector_log: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> list[CaseResult]:
        """The cases that could not be protected."""
        return [result for result in self.results if result.status == "failed"]


def _as_volume(array: np.ndarray) -> np.ndarray:
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
    volume = _as_volume(structure)
    indices = [int(z) for z in np.flatnonzero(volume.reshape(-1, volume.shape[-1]).any(axis=0))]
    return structure, indices


def case_eps_scale(
    structure: np.ndarray, budget: Budget, *, target_psnr: float | None, eps_cap: float
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

    Returns:
        The scale (``> 0``); ``1.0`` when there is no target or no structure.
    """
    if target_psnr is None:
        return 1.0
    _, allowed = _support_box(structure, budget.band_width)
    n_support = int(allowed.sum()) if allowed is not None else 0
    if n_support == 0:
        return 1.0
    eps = math.sqrt(10 ** (-target_psnr / 10) * structure.size / n_support)
    return min(eps, eps_cap) / budget.eps_max


def _support_box(structure: np.ndarray, band_width: int) -> tuple[tuple[slice, ...], np.ndarray | None]:
    """The support (structure plus its contour band, slice by slice along the last axis) inside its bounding box.

    Returns ``(box, allowed)``: ``box`` indexes the structure's volume view (``(H, W, 1)`` for 2D), ``allowed`` the
    bool support there (``None`` without structure). The support of a slice is its structure dilated by the band in
    the slice's plane, so the box is the structure's bounding box grown in-plane by the band width (clipped), and
    computing it there gives the same voxels as on the whole slice (the dilation only looks ``band_width`` away).
    """
    from umed.regions import support

    volume = _as_volume(structure)
    box = bounding_box(volume)
    if box is None:
        return (), None
    grown = tuple(slice(max(b.start - band_width, 0), min(b.stop + band_width, n)) if axis < 2 else b
                  for axis, (b, n) in enumerate(zip(box, volume.shape)))
    slices = np.moveaxis(volume[grown], -1, 0)
    allowed = np.stack([support(slices[k], band_width) if slices[k].any() else np.zeros_like(slices[k])
                        for k in range(len(slices))], axis=-1)
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
    deltas: Sequence[np.ndarray], n_voxels: int, eps: float, span: float, slope: float, start: float, *,
    target_psnr: float, eps_cap: float,
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

    Returns:
        A :class:`ProtectedArray`; its array has the input's shape and dtype.
    """
    structure, indices = structure_slices(labels, structure_labels)
    scale = case_eps_scale(structure, protector.budget, target_psnr=target_psnr, eps_cap=eps_cap)
    eps = protector.budget.eps_max * scale
    if not indices:
        return ProtectedArray(image.copy(), eps, scale, ())
    image_volume, structure_volume = _as_volume(image), _as_volume(structure)
    span = float(mapping.high - mapping.low)
    deltas: list[np.ndarray] = []
    for start in range(0, len(indices), batch_size):
        chunk = indices[start : start + batch_size]
        unit = mapping.to_unit(np.stack([image_volume[..., z] for z in chunk])).astype(np.float32)
        batch = SliceBatch(
            images=unit,
            structures=np.stack([structure_volume[..., z] for z in chunk]),
            keys=[f"{meta.case_id}/{z}" for z in chunk],
            eps_scale=np.full(len(chunk), scale, dtype=np.float32),
        )
        deltas.append(np.clip(protector.perturb(batch).astype(np.float32), -eps, eps))
    if target_psnr is not None:  # spend exactly the budget the PSNR target allows
        sum_squares = float(sum(np.sum(d.astype(np.float64) ** 2) for d in deltas))
        factor = exact_psnr_scale(sum_squares, image.size, eps, target_psnr=target_psnr, eps_cap=eps_cap)
        info = _integer_info(np.dtype(meta.disk_dtype))
        if info is not None:  # integer storage truncates each change toward the original: find the factor after it
            factor = _truncated_psnr_factor(deltas, image.size, eps, span, meta.slope or 1.0, factor,
                                            target_psnr=target_psnr, eps_cap=eps_cap)
        eps, scale = eps * factor, scale * factor
        headroom = eps * (1 - 1e-5)  # so float32 rounding of the written value cannot land past the bound
        deltas = [np.clip(d * np.float32(factor), -headroom, headroom) for d in deltas]
    del structure, structure_volume  # peak memory: the output is allocated after the generator passes
    out = image.copy()
    out_volume = _as_volume(out)
    for k, start in enumerate(range(0, len(indices), batch_size)):
        chunk = indices[start : start + batch_size]
        original = np.stack([image_volume[..., z] for z in chunk])
        # no clipping to the percentile window [0, 1]: it is not a physical range, and clipping there took half the
        # pattern away from the brightest part of a structure (enhancing tumour), where a victim's real features
        # live; the file's dtype range is kept by _add_in_file_units
        protected = _add_in_file_units(original, deltas[k].astype(np.float64) * span, meta)
        for index, z in enumerate(chunk):
            out_volume[..., z] = protected[index]
    if meta.header is not None:  # a real file's metadata: snap to what it stores (per-slice DICOM rescale, BitsStored)
        from umed.io import quantize

        out = np.asarray(quantize(out, meta)).astype(image.dtype, copy=False)
    # a rounding that overshoots the budget (another slice's rescale, float precision) gives the voxel back its value;
    # only the perturbed slices can differ from the input (quantize is the identity on loaded values)
    out_volume = _as_volume(out)
    for start in range(0, len(indices), batch_size):
        chunk = indices[start : start + batch_size]
        before, after = image_volume[..., chunk], out_volume[..., chunk]
        overshoot = np.abs(after.astype(np.float64) - before) > eps * span * (1 + 1e-9)
        after[overshoot] = before[overshoot]
        out_volume[..., chunk] = after
    return ProtectedArray(out, eps, scale, tuple(indices))


# --------------------------------------------------------------------------------------------------------- batch


def _fit_mapping(image: np.ndarray, cfg: ProtectConfig) -> Any:
    from umed.intensity import fit_mapping

    if cfg.intensity_mode == "window":
        return fit_mapping(image, mode="window", window=cfg.window)
    return fit_mapping(image, mode="percentile")


def _collect_training_slices(
    cases: Sequence[Case], cfg: ProtectConfig, budget: Budget, progress: ProgressCallback | None
) -> tuple[SliceBatch | None, list[CaseResult]]:
    """Validate every case and gather the slices that hold structure, normalised, for fitting.

    Slices are taken evenly from each case, the ones with the most structure first, up to ``max_train_slices`` in
    all. Returns the batch (``None`` if no case has structure) and a failed :class:`CaseResult` per bad case.
    """
    from umed.io import validate_case

    failures: list[CaseResult] = []
    per_case: list[tuple[str, np.ndarray, np.ndarray, float, list[int]]] = []
    for done, case in enumerate(cases):
        try:
            image, meta, labels, _ = validate_case(case)
        except UmedError as error:
            failures.append(CaseResult(case.case_id, "failed", error=str(error)))
            continue
        finally:
            if progress:
                progress("checking cases", done + 1, len(cases))
        structure, indices = structure_slices(labels, cfg.structure_labels)
        if not indices:
            continue
        volume, structure_volume = _as_volume(image), _as_volume(structure)
        order = sorted(indices, key=lambda z: -int(structure_volume[..., z].sum()))
        scale = case_eps_scale(structure, budget, target_psnr=cfg.target_psnr, eps_cap=cfg.eps_cap)
        mapping = _fit_mapping(image, cfg)
        per_case.append(
            (
                case.case_id,
                mapping.to_unit(np.stack([volume[..., z] for z in order])).astype(np.float32),
                np.stack([structure_volume[..., z] for z in order]),
                scale,
                order,
            )
        )
    if not per_case:
        return None, failures
    quota = max(1, cfg.max_train_slices // len(per_case))
    images, structures, keys, scales = [], [], [], []
    shapes = {entry[1].shape[1:] for entry in per_case}
    for case_id, unit, struct, scale, chosen in per_case:
        take = min(quota, len(chosen))
        images.append(unit[:take])
        structures.append(struct[:take])
        keys.extend(f"{case_id}/{z}" for z in chosen[:take])
        scales.append(np.full(take, scale, dtype=np.float32))
    if len(shapes) > 1:  # slices of different sizes: pad to the largest, structure stays False in the padding
        height = max(shape[0] for shape in shapes)
        width = max(shape[1] for shape in shapes)
        images = [np.pad(a, ((0, 0), (0, height - a.shape[1]), (0, width - a.shape[2]))) for a in images]
        structures = [np.pad(a, ((0, 0), (0, height - a.shape[1]), (0, width - a.shape[2]))) for a in structures]
    batch = SliceBatch(np.concatenate(images), np.concatenate(structures), keys, np.concatenate(scales))
    return batch, failures


def _hashes(cases: Sequence[Case]) -> dict[str, tuple[str | None, str | None]]:
    """``case_id -> (image SHA-256, mask SHA-256)``; ``None`` for a missing or unreadable file."""
    from umed.io.provenance import sha256_file

    def digest(path: Path | None) -> str | None:
        try:
            return sha256_file(path) if path is not None else None
        except OSError:
            return None

    return {case.case_id: (digest(case.image_path), digest(case.mask_path)) for case in cases}


def _fit_cases(cfg: ProtectConfig, cases: Sequence[Case]) -> list[Case]:
    fit_on = [case for case in cases if cfg.fit_cases is None or case.case_id in cfg.fit_cases]
    if cfg.fit_cases is not None and len(fit_on) != len(set(cfg.fit_cases)):
        missing = sorted(set(cfg.fit_cases) - {case.case_id for case in fit_on})
        raise ConfigError(f"{cfg.images}: fit_cases not found in the dataset ({missing})")
    return fit_on


def _nothing_to_protect(cfg: ProtectConfig, cases: Sequence[Case]) -> ConfigError:
    """The error for a dataset whose masks hold no structure voxel, naming the labels they do hold."""
    from umed.io import load_mask

    present: set[int] = set()
    for case in cases:
        try:
            present.update(int(value) for value in np.unique(load_mask(case.mask_path)[0]))
        except (UmedError, TypeError):
            continue
    present.discard(0)
    where = cfg.masks or cfg.images
    if cfg.structure_labels:
        return ConfigError(f"{where}: no case has any voxel of label(s) {list(cfg.structure_labels)} (expected "
                           f"labels present in the masks: {sorted(present) or 'none but 0'})")
    return ConfigError(f"{where}: every mask is empty (expected some label > 0 to protect, got only 0)")


@dataclass
class _Plan:
    """What a run will apply and under which resume key."""

    protector: Protector | None
    path: Path | None
    document: dict[str, Any]
    failures: list[CaseResult]
    key: dict[str, Any]
    fit_ids: list[str]


def _plan(cfg: ProtectConfig, cases: Sequence[Case], hashes: dict, overwrite: bool, mode: int,
          progress: ProgressCallback | None) -> tuple[ProtectConfig, _Plan, dict[str, Any] | None]:
    """Decide the resume key, check OUT against it, then load, reuse or fit the protector.

    Returns ``(cfg, plan, previous manifest)``; the previous manifest is ``None`` unless its cases may be reused.
    """
    from umed.protectors import make_protector
    from umed.protector_io import load_protector
    from umed.resume import check_reusable, read_manifest, remove_previous_outputs, resume_key, warn_removed_cases

    version = _version()
    if cfg.protector is not None:
        protector, document = load_protector(cfg.protector)
        cfg = _recorded_rules(cfg, document)
        training = document.get("training_data") or []
        key = resume_key(cfg, protector.config(), training, version, document.get("weights_sha256"))
        fit_on: list[Case] = []
    else:
        budget = Budget(cfg.eps_contour, cfg.eps_texture, cfg.band_width)
        protector = make_protector(cfg.method, budget, seed=cfg.seed, **cfg.method_settings)
        fit_on = _fit_cases(cfg, cases)
        training = [[case.case_id, *hashes[case.case_id]] for case in fit_on]
        key = resume_key(cfg, protector.config(), training, version)
    own = cfg.out / PROTECTOR_NAME
    if overwrite:
        for path in remove_previous_outputs(cfg.out, _manifest_or_none(cfg.out / MANIFEST_NAME),
                                            [PROTECTOR_NAME, own.with_suffix(".pt").name]):
            logger.warning("%s: removed (--overwrite)", path)
    previous = read_manifest(cfg.out / MANIFEST_NAME)
    check_reusable(cfg.out, previous, _json_or_none(own), key)
    warn_removed_cases(cfg.out, previous, [case.case_id for case in cases])
    fit_ids = sorted(str(item[0]) for item in training)
    if cfg.protector is not None:
        return cfg, _Plan(protector, Path(cfg.protector), document, [], key, fit_ids), previous
    if own.is_file():
        try:
            reused, document = load_protector(own)
            return cfg, _Plan(reused, own, document, [], key, fit_ids), previous  # cases validated when applied
        except UmedError as error:
            logger.warning("%s: not reused, fitted again (%s)", own, error)
    return cfg, _fit(cfg, fit_on, protector, key, fit_ids, mode, progress), previous


def _fit(cfg: ProtectConfig, fit_on: Sequence[Case], protector: Protector, key: dict[str, Any], fit_ids: list[str],
         mode: int, progress: ProgressCallback | None) -> _Plan:
    """Fit ``protector`` on the training cases and save it as OUT/protector.json (+ .pt)."""
    import json

    from umed.protector_io import save_protector
    from umed.resume import key_digest

    batch, failures = _collect_training_slices(fit_on, cfg, protector.budget, progress)
    if batch is None:
        if not failures:
            raise _nothing_to_protect(cfg, fit_on)
        # every case with structure failed: no protector; the per-case errors are reported, empty masks passed on
        return _Plan(None, None, {}, failures, key, fit_ids)
    started = time.perf_counter()
    log = protector.fit(batch, progress=progress)
    extra = {
        "structure_labels": list(cfg.structure_labels) if cfg.structure_labels else None,
        "intensity_mode": cfg.intensity_mode,
        "window": list(cfg.window) if cfg.window else None,
        "target_psnr": cfg.target_psnr,
        "eps_cap": cfg.eps_cap,
        "training_slices": int(batch.images.shape[0]),
        "training_seconds": round(time.perf_counter() - started, 2),
        "training_log": log,
        "training_data": key["training_data"],
        "fit_cases": fit_ids,
        "resume_key": key,
        "resume_key_sha256": key_digest(key),
    }
    path = save_protector(protector, cfg.out / PROTECTOR_NAME, extra=extra, mode=mode)
    return _Plan(protector, path, json.loads(path.read_text()), failures, key, fit_ids)


def _version() -> str:
    from umed.io.provenance import package_versions

    return package_versions()["umed"]


def _json_or_none(path: Path) -> dict[str, Any] | None:
    import json

    try:
        document = json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return {}  # unreadable: not this run's (refused unless --overwrite)
    return document if isinstance(document, dict) or document is None else {}


def _manifest_or_none(path: Path) -> dict[str, Any] | None:
    document = _json_or_none(path)
    return document or None


def protect_dataset(
    cfg: ProtectConfig,
    *,
    progress: ProgressCallback | None = None,
    overwrite: bool = False,
    workers: int = 1,
    scheduler: str | Path | None = None,
) -> ProtectSummary:
    """Protect every case of a dataset and write OUT/ (cases in their own format, protector, manifest.json).

    A bad case is recorded in the summary and the manifest and the run goes on; a case with an empty mask is copied
    unchanged (with a warning) so that the released dataset stays complete. OUT is locked for the run
    (:mod:`umed.io.lock`) and temporary files a killed run left in it are removed first. An OUT written before with
    the same resume key (:mod:`umed.resume`) is resumed: its protector is reused and a case is skipped when its image,
    mask and output still have the recorded SHA-256, so the final bytes are an uninterrupted run's. An OUT written
    with another key is refused unless ``overwrite`` (which first deletes what the earlier run wrote).

    The fit runs here; the cases are applied by :func:`umed.engine.map_jobs`: in this process (``workers=1``), in
    ``workers`` local processes, or on the Dask cluster at ``scheduler``. The outputs and the manifest are the same
    bytes either way (apart from each case's ``seconds``); the manifest is written here, in case order.

    Raises:
        ConfigError: OUT inside an input folder, OUT written with other settings, no structure to protect,
            unreachable scheduler.
        InputError: the image folder cannot be read.
        OutputError: OUT is a file, cannot be written, or another run holds its lock.
    """
    from umed.io import check_output_location, discover_cases
    from umed.io.atomic import output_mode, sweep_temporaries
    from umed.io.lock import output_lock
    from umed.resume import captured_warnings

    check_output_location(cfg.out, [cfg.images] + ([cfg.masks] if cfg.masks else []))
    with captured_warnings() as warnings:
        cases = discover_cases(cfg.images, cfg.masks)
        with output_lock(cfg.out):
            for path in sweep_temporaries(cfg.out):
                logger.warning("%s: removed a temporary file left by an interrupted run", path)
            hashes = _hashes(cases)
            mode = output_mode(*(case.image_path for case in cases))
            cfg, plan, previous = _plan(cfg, cases, hashes, overwrite, mode, progress)
            return _apply_all(cfg, cases, hashes, plan, previous, mode, warnings, progress, workers, scheduler)


def _apply_all(cfg: ProtectConfig, cases: Sequence[Case], hashes: dict, plan: _Plan, previous: dict[str, Any] | None,
               mode: int, warnings: list[str], progress: ProgressCallback | None, workers: int = 1,
               scheduler: str | Path | None = None) -> ProtectSummary:
    """Apply the planned protector to every case, writing the manifest after each one."""
    from umed.io.atomic import write_json_atomic
    from umed.io.provenance import package_versions
    from umed.resume import key_digest

    manifest_path = cfg.out / MANIFEST_NAME
    done_before = (previous or {}).get("cases", {})
    failed_ids = {result.case_id: result for result in plan.failures}
    path = plan.path
    manifest: dict[str, Any] = {
        "umed": _version(),
        "settings": cfg.to_dict(),
        "protector": plan.protector.config() if plan.protector is not None else None,
        "protector_file": None if path is None else (path.name if path.parent == cfg.out else str(path)),
        "resume_key": plan.key,
        "resume_key_sha256": key_digest(plan.key),
        "fit_cases": plan.fit_ids,
        "data_range": "normalised intensity, 1.0 = the case's intensity mapping span",
        "versions": package_versions(),
        "cases": {},
        "failed": {},
        "warnings": warnings,
    }
    from umed.engine import map_jobs

    before = list(warnings)  # then each case's own warnings, in case order (a worker's are logged where it runs)
    outcomes: dict[str, tuple[CaseResult, Any, list[str]]] = {key: (r, None, []) for key, r in failed_ids.items()}
    jobs = [(case, done_before.get(case.case_id), hashes[case.case_id]) for case in cases
            if case.case_id not in failed_ids]
    if progress:
        progress("protecting cases", len(outcomes), len(cases))
    for _, outcome in map_jobs(_protect_job, jobs, (cfg, plan.protector, mode), workers=workers, scheduler=scheduler,
                               lost=_lost_job):
        outcomes[outcome[0].case_id] = outcome
        _fill_manifest(manifest, cases, outcomes, before)
        write_json_atomic(manifest, manifest_path, mode=mode)
        if progress:
            progress("protecting cases", len(outcomes), len(cases))
    _fill_manifest(manifest, cases, outcomes, before)
    write_json_atomic(manifest, manifest_path, mode=mode)
    results = [outcomes[case.case_id][0] for case in cases]
    return ProtectSummary(results, manifest_path, path, plan.document.get("training_log", {}))


def _fill_manifest(manifest: dict[str, Any], cases: Sequence[Case], outcomes: dict[str, tuple[CaseResult, Any, list[str]]],
                   before: list[str]) -> None:
    """Set the manifest's cases, failures and warnings from the outcomes so far, in case order (whatever order they
    came in)."""
    done = [outcomes[case.case_id] for case in cases if case.case_id in outcomes]
    manifest["cases"] = {result.case_id: entry for result, entry, _ in done if entry is not None}
    manifest["failed"] = {result.case_id: result.error for result, _, _ in done if result.status == "failed"}
    manifest["warnings"] = before + [message for _, _, messages in done for message in messages]


def _lost_job(job: tuple[Case, Any, Any], message: str) -> tuple[CaseResult, None, list[str]]:
    return CaseResult(job[0].case_id, "failed", error=f"{job[0].image_path}: {message}"), None, []


def _protect_job(
    job: tuple[Case, dict[str, Any] | None, tuple[str | None, str | None]], shared: tuple[ProtectConfig, Any, int]
) -> tuple[CaseResult, dict[str, Any] | None, list[str]]:
    """One case on any worker (see :func:`umed.engine.map_jobs`): ``(result, manifest entry or None, warnings)``; a
    bad case gives a failed result. Temporary files a killed earlier attempt of this case left are removed first."""
    from umed.resume import captured_warnings

    (case, earlier, hashes), (cfg, protector, mode) = job, shared
    for stale in cfg.out.glob(f".{case.image_path.name}.*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
    with captured_warnings() as messages:
        try:
            result, entry = _protect_one(case, cfg, protector, earlier, hashes, mode)
        except UmedError as error:
            result, entry = CaseResult(case.case_id, "failed", error=str(error)), None
    return result, entry, list(messages)


def _recorded_rules(cfg: ProtectConfig, document: dict[str, Any]) -> ProtectConfig:
    """Apply a saved protector with the rules it was fitted with (structure, per-case budget, intensity mapping).

    These define the protector as much as its weights; a setting of ``cfg`` that disagrees is overridden with a
    warning, so ``umed protect --protector`` and the MONAI transform give the same output.
    """
    import dataclasses

    recorded = {
        "structure_labels": tuple(document["structure_labels"]) if document.get("structure_labels") else None,
        "target_psnr": document.get("target_psnr"),
        "eps_cap": document.get("eps_cap", cfg.eps_cap),
        "intensity_mode": document.get("intensity_mode", cfg.intensity_mode),
        "window": tuple(document["window"]) if document.get("window") else None,
    }
    changed = {key: value for key, value in recorded.items() if getattr(cfg, key) != value}
    for key, value in changed.items():
        logger.warning("%s: %s=%r as the protector was fitted (not %r)", cfg.protector, key, value, getattr(cfg, key))
    return dataclasses.replace(cfg, **changed) if changed else cfg


def _set_mode(target: Path, mode: int) -> None:
    """Give a written case (file, or DICOM folder's files) ``mode`` (the input's, when stricter than the default)."""
    files = [p for p in target.rglob("*") if p.is_file()] if target.is_dir() else [target]
    for file in files:
        if file.stat().st_mode & 0o777 != mode:
            os.chmod(file, mode)


def _protect_one(
    case: Case, cfg: ProtectConfig, protector: Protector | None, earlier: dict[str, Any] | None,
    hashes: tuple[str | None, str | None], mode: int,
) -> tuple[CaseResult, dict[str, Any]]:
    """Protect one case (or confirm an earlier run's output) and return its result and manifest entry."""
    from umed.io import output_path_for, save_case, validate_case
    from umed.io.atomic import copy_atomic, output_mode
    from umed.io.provenance import sha256_file

    input_sha, mask_sha = hashes
    if (earlier and input_sha and earlier.get("input_sha256") == input_sha and earlier.get("mask_sha256") == mask_sha
            and isinstance(earlier.get("output"), str)):
        target = cfg.out / earlier["output"]
        if target.exists() and sha256_file(target) == earlier.get("output_sha256"):
            return CaseResult(case.case_id, "skipped", target, metrics=earlier.get("metrics", {}), details=earlier), earlier

    image, meta, labels, _ = validate_case(case)
    target = output_path_for(case, meta, cfg.out)
    structure, indices = structure_slices(labels, cfg.structure_labels)
    del labels  # only the structure is needed from here (peak memory: a CT's label map is 200 MB)
    if not indices:
        logger.warning("%s: the mask has no structure voxel; the case is copied unchanged", case.mask_path)
        copy_atomic(case.image_path, target, mode=output_mode(case.image_path))
        entry = {
            "status": "passed_through",
            "input": str(case.image_path),
            "mask": str(case.mask_path),
            "output": target.name,
            "input_sha256": input_sha,
            "mask_sha256": mask_sha,
            "output_sha256": sha256_file(target),
            "warning": "mask has no structure voxel: copied unchanged",
            "metrics": {},
        }
        return CaseResult(case.case_id, "passed_through", target, details=entry), entry
    if protector is None:
        raise UmedError(f"{case.image_path}: not protected (no protector could be fitted: every training case with "
                        "structure failed, see the failed cases)")

    started = time.perf_counter()
    mapping = _fit_mapping(image, cfg)
    protected = protect_array(
        image,
        structure,  # as a label map: its foreground (every label > 0) is the structure itself
        meta,
        protector,
        mapping=mapping,
        structure_labels=None,
        target_psnr=cfg.target_psnr,
        eps_cap=cfg.eps_cap,
    )
    metrics = change_metrics(image, protected.array, structure, mapping=mapping, band_width=protector.budget.band_width)
    _check_guarantees(case, metrics, protected.eps)
    save_case(protected.array, meta, target, derived=True)
    _set_mode(target, output_mode(case.image_path))
    entry = {
        "status": "protected",
        "input": str(case.image_path),
        "mask": str(case.mask_path),
        "output": target.name,
        "input_sha256": input_sha,
        "mask_sha256": mask_sha,
        "output_sha256": sha256_file(target),
        "format": meta.format,
        "seed": protector.seed,
        "eps": protected.eps,
        "eps_255": protected.eps * 255,
        "eps_scale": protected.eps_scale,
        "intensity_mapping": mapping.to_dict(),
        "changed_slices": len(protected.changed_slices),
        "seconds": round(time.perf_counter() - started, 3),
        "metrics": metrics,
    }
    return CaseResult(case.case_id, "protected", target, metrics=metrics, details=entry), entry


def change_metrics(
    original: np.ndarray, protected: np.ndarray, structure: np.ndarray, *, mapping: Any, band_width: int
) -> dict[str, float]:
    """Imperceptibility of one protected case, in normalised units (data_range 1).

    PSNR is over the whole image (per volume for 3D, per image for 2D) and over the structure (ROI); SSIM over the
    whole image (scikit-image, data_range 1); ``max_abs_change`` in normalised units and in /255;
    ``outside_support_changes`` counts voxels changed outside structure plus band (must be 0).

    Every number is computed from the bounding box of the changed voxels (one comparison pass over the image):
    outside it the two images are equal, so the squared errors there are 0 and every local SSIM is 1
    (:func:`umed.metrics.ssim_changed`). The values are those of the whole-image metrics up to float summation order.
    """
    from umed.metrics import ssim_changed

    span = float(mapping.high - mapping.low)
    box = changed_box(original, protected)
    n_structure = int(np.count_nonzero(structure))
    if box is None:
        return {"psnr": float("inf"), "psnr_roi": float("inf") if n_structure else float("nan"), "ssim": 1.0,
                "max_abs_change": 0.0, "max_abs_change_255": 0.0, "changed_voxels": 0, "outside_support_changes": 0}
    reference, test = mapping.to_unit(original[box]), mapping.to_unit(protected[box])
    squared = np.square(reference.astype(np.float64) - test.astype(np.float64))
    change = np.abs(protected[box].astype(np.float64) - original[box].astype(np.float64)) / span
    changed = change > 0
    allowed_box, allowed = _support_box(structure, band_width)
    inside = 0
    if allowed is not None:  # changed voxels inside the support: the support and the changed box overlap
        volume_box = box + (slice(0, 1),) if structure.ndim == 2 else box
        overlap = tuple(slice(max(a.start, b.start), min(a.stop, b.stop)) for a, b in zip(volume_box, allowed_box))
        if all(o.stop > o.start for o in overlap):
            mine = tuple(slice(o.start - a.start, o.stop - a.start) for o, a in zip(overlap, volume_box))
            theirs = tuple(slice(o.start - b.start, o.stop - b.start) for o, b in zip(overlap, allowed_box))
            inside = int((_as_volume(changed)[mine] & allowed[theirs]).sum())
    sse, sse_roi = float(squared.sum()), float(squared[structure[box]].sum())
    return {
        "psnr": _psnr_from_mse(sse / original.size),
        "psnr_roi": _psnr_from_mse(sse_roi / n_structure) if n_structure else float("nan"),
        "ssim": ssim_changed(original, protected, data_range=1.0, prepare=mapping.to_unit, box=box),
        "max_abs_change": float(change.max()),
        "max_abs_change_255": float(change.max() * 255),
        "changed_voxels": int(changed.sum()),
        "outside_support_changes": int(changed.sum()) - inside,
    }


def _psnr_from_mse(mse: float) -> float:
    """PSNR (dB, data_range 1) of a mean squared error, as :func:`umed.metrics.psnr` computes it."""
    return float("inf") if mse == 0.0 else float(10.0 * np.log10(1.0 / mse))


def _check_guarantees(case: Case, metrics: dict[str, float], eps: float) -> None:
    """Refuse to write a case that breaks the promises (budget, support); a bug, never expected."""
    from umed.errors import UmedError

    if metrics["outside_support_changes"]:
        raise UmedError(f"{case.image_path}: {metrics['outside_support_changes']} voxels changed outside the support")
    if metrics["max_abs_change"] > eps * (1 + 1e-5) + 1e-7:
        raise UmedError(
            f"{case.image_path}: largest change exceeds the budget (expected <= {eps:.6f}, got {metrics['max_abs_change']:.6f})"
        )
