"""Defenses a data user may apply, knowingly or not, when training on protected data; the audit runs each of them.

Published work shows that unlearnable examples weaken under adversarial training, JPEG or other quantisation,
Gaussian/median filtering, strong augmentation, early stopping and mixing protected with clean data (see
``METHODS.md``). Each defense here is either a transform of the training arrays (applied once, before training, at the
victim's resolution) or a transform of each training batch inside the loop, or both:

=============  ==========  ===========================================================================================
name           kind        what it does
=============  ==========  ===========================================================================================
``none``       -           nothing (early stopping is covered by reporting the best-epoch Dice, not only the last)
``adversarial`` batch      PGD on the training loss (Madry et al. 2018): L-inf 8/255, 3 steps, random start
``jpeg``       data        each 2D slice rescaled to uint8 by its min/max, JPEG quality 75 (pillow), mapped back
``quantize``   data        each 2D slice rescaled to 8 bits by its min/max and back (quantisation without JPEG)
``gaussian``   data        Gaussian filter, sigma 1 voxel over every spatial axis of each sample
``median``     data        median filter, 3x3 (3x3x3 for volumes)
``augment``    batch       nnU-Net v2 2.8.1's training augmentation (:mod:`umed.audit.augment`, deviations there):
                           rotation/scale, noise, blur, brightness, contrast, low resolution, gamma, mirroring
``intensity``  batch       intensity augmentation only, each with p 0.5 per sample: gamma 0.7..1.5 (on the sample's
                           min-max), scale x0.9..1.1, Gaussian noise sigma 0.03
``downsample`` data        every 2D slice averaged 2x2 down and bilinearly back up: what training on slices
                           resampled to half size does to the images (a low-pass filter)
``mix``        data        poison ratio 0.5: half the training cases (whole cases) replaced by their clean versions;
                           the audit also trains a victim on that clean half alone (the fair comparison)
=============  ==========  ===========================================================================================

Arrays are in umed's normalised intensity space (``data_range`` 1, see :mod:`umed.intensity`): training arrays
``(N, H, W)`` (slices) or ``(N, X, Y, Z)`` (volumes or patches, axial slices on the last axis), float32; labels of the
same shape, integer. Batch tensors are ``(B, 1, *spatial)``. Randomness comes only from the generators passed in.
The batch-level steps live in :mod:`umed.audit.adversarial` (PGD) and :mod:`umed.audit.augment` (augmentation).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from umed.audit.adversarial import pgd_attack
from umed.audit.augment import intensity_augment, nnunet_augment
from umed.errors import ConfigError
from umed.registry import Registry

if TYPE_CHECKING:  # torch is imported lazily so that ``umed --help`` stays fast
    import torch

__all__ = [
    "DEFENSES",
    "DEFENSE_NAMES",
    "Defense",
    "get_defense",
    "gaussian_filter_samples",
    "jpeg_slices",
    "median_filter_samples",
    "mix_clean",
    "quantize_slices",
    "downsample_slices",
]

# ---------------------------------------------------------------------------------------------------------------------
# data-level transforms (numpy in, numpy out, never in place)


def _slices_2d(x: np.ndarray) -> np.ndarray:
    """View ``(N, H, W)`` or ``(N, X, Y, Z)`` as a stack of 2D slices ``(M, H, W)`` (a copy for volumes)."""
    if x.ndim == 3:
        return x
    if x.ndim == 4:
        return np.moveaxis(x, -1, 1).reshape(-1, x.shape[1], x.shape[2])
    raise ConfigError(f"defense: expected samples (N, H, W) or (N, X, Y, Z) (got shape {x.shape})")


def _unslice_2d(slices: np.ndarray, like: np.ndarray) -> np.ndarray:
    if like.ndim == 3:
        return slices
    n, sx, sy, sz = like.shape
    return np.moveaxis(slices.reshape(n, sz, sx, sy), 1, -1)


def _per_slice_uint8(x: np.ndarray, codec: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Rescale each 2D slice to uint8 by its own min/max, apply ``codec`` (uint8 -> uint8), map back to float32."""
    x = np.asarray(x, dtype=np.float32)
    slices = _slices_2d(x)
    out = np.empty(slices.shape, np.float32)
    for i, s in enumerate(slices):
        lo, hi = float(s.min()), float(s.max())
        if hi <= lo:
            out[i] = s
            continue
        scale = (hi - lo) / 255.0
        code = np.clip(np.rint((s - lo) / scale), 0, 255).astype(np.uint8)
        out[i] = codec(code).astype(np.float32) * scale + lo
    return np.ascontiguousarray(_unslice_2d(out, x))


def jpeg_slices(x: np.ndarray, *, quality: int = 75) -> np.ndarray:
    """JPEG-compress every 2D slice (pillow, greyscale, given quality) after rescaling it to uint8 by its min/max.

    Args:
        x: ``(N, H, W)`` slices or ``(N, X, Y, Z)`` volumes (axial slices on the last axis), float.

    Returns:
        float32 array of the same shape, values in each slice's original ``[min, max]``.
    """
    from PIL import Image

    def codec(code: np.ndarray) -> np.ndarray:
        buffer = io.BytesIO()
        Image.fromarray(code, mode="L").save(buffer, format="JPEG", quality=quality)
        buffer.seek(0)
        with Image.open(buffer) as image:
            return np.asarray(image.convert("L"), dtype=np.uint8)

    return _per_slice_uint8(x, codec)


def quantize_slices(x: np.ndarray) -> np.ndarray:
    """Quantise every 2D slice to 8 bits (256 levels between its min and max) and back.

    Args:
        x: ``(N, H, W)`` or ``(N, X, Y, Z)``, float.

    Returns:
        float32 array of the same shape.
    """
    return _per_slice_uint8(x, lambda code: code)


def gaussian_filter_samples(x: np.ndarray, *, sigma: float = 1.0) -> np.ndarray:
    """Gaussian-filter each sample over its spatial axes (sigma in voxels, reflect at the borders).

    Args:
        x: ``(N, *spatial)`` float.

    Returns:
        float32 array of the same shape.
    """
    from scipy import ndimage

    x = np.asarray(x, dtype=np.float32)
    return ndimage.gaussian_filter(x, sigma=(0.0,) + (sigma,) * (x.ndim - 1), mode="reflect")


def median_filter_samples(x: np.ndarray, *, size: int = 3) -> np.ndarray:
    """Median-filter each sample ``(N, *spatial)`` with a ``size`` window on every spatial axis (3x3 for slices);
    float32 of the same shape, as :func:`gaussian_filter_samples`."""
    from scipy import ndimage

    x = np.asarray(x, dtype=np.float32)
    return ndimage.median_filter(x, size=(1,) + (size,) * (x.ndim - 1), mode="reflect")


def mix_clean(
    x: np.ndarray, clean_x: np.ndarray, groups: np.ndarray, *, ratio: float, rng: np.random.Generator
) -> tuple[np.ndarray, list[int]]:
    """Replace whole cases of protected training data by their clean versions so that only ``ratio`` stays protected.

    Args:
        x: protected samples ``(N, *spatial)``.
        clean_x: the same samples before protection, same shape.
        groups: ``(N,)`` integer case index of every sample (slices of one case share it).
        ratio: poison ratio in ``[0, 1]``: the fraction of cases kept protected (rounded, at least one case clean
            when ``ratio < 1`` and there are two or more cases).
        rng: draws which cases stay protected.

    Returns:
        ``(mixed, clean_groups)``: float32 array of the same shape, and the sorted case indices made clean.

    Raises:
        ConfigError: shapes disagree or ``ratio`` is outside ``[0, 1]``.
    """
    if not 0.0 <= ratio <= 1.0:
        raise ConfigError(f"mix: poison ratio must be in [0, 1] (got {ratio})")
    groups = np.asarray(groups)
    if clean_x.shape != x.shape or groups.shape != (x.shape[0],):
        raise ConfigError(
            f"mix: protected {x.shape}, clean {clean_x.shape} and groups {groups.shape} must describe the same samples"
        )
    cases = np.unique(groups)
    n_clean = int(round((1.0 - ratio) * len(cases)))
    if ratio < 1.0 and len(cases) > 1:
        n_clean = min(max(n_clean, 1), len(cases))
    chosen = sorted(int(c) for c in rng.permutation(cases)[:n_clean])
    out = np.array(x, dtype=np.float32, copy=True)
    replace = np.isin(groups, chosen)
    out[replace] = clean_x[replace]
    return out, chosen


def downsample_slices(x: np.ndarray, *, factor: int = 2) -> np.ndarray:
    """Average every 2D slice over ``factor x factor`` blocks and interpolate it back bilinearly to its size.

    This is what a data user who trains on slices resampled to ``1/factor`` of their size gets, expressed at the
    original size so the victim and its test set are unchanged: detail finer than ``factor`` pixels is removed.

    Args:
        x: ``(N, H, W)`` or ``(N, X, Y, Z)`` (axial slices on the last axis), float.

    Returns:
        float32 array of the same shape.
    """
    import torch
    import torch.nn.functional as F

    x = np.asarray(x, dtype=np.float32)
    slices = _slices_2d(x)
    t = torch.from_numpy(np.ascontiguousarray(slices))[:, None]
    small = F.avg_pool2d(t, factor, ceil_mode=True)
    back = F.interpolate(small, size=tuple(t.shape[2:]), mode="bilinear", align_corners=False)[:, 0].numpy()
    return np.ascontiguousarray(_unslice_2d(back.astype(np.float32), x))


# ---------------------------------------------------------------------------------------------------------------------
# the defense objects the audit and ``train_victim`` use


@dataclass(frozen=True)
class Defense:
    """One named defense: a data part (:meth:`prepare`) and a training-loop part (:meth:`on_batch`).

    Attributes:
        name: one of :data:`DEFENSE_NAMES`.
        summary: one line for reports.
        eps: PGD radius for ``adversarial`` (normalised units).
        steps: PGD steps for ``adversarial``.
        quality: JPEG quality for ``jpeg``.
        sigma: Gaussian sigma (voxels) for ``gaussian``.
        size: median window for ``median``.
        poison_ratio: fraction of training cases kept protected for ``mix``.
    """

    name: str
    summary: str
    eps: float = 8 / 255
    steps: int = 3
    quality: int = 75
    sigma: float = 1.0
    size: int = 3
    poison_ratio: float = 0.5

    def prepare(
        self,
        x: np.ndarray,
        y: np.ndarray,
        *,
        clean_x: np.ndarray | None = None,
        groups: np.ndarray | None = None,
        rng: np.random.Generator | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Transform the training arrays once before training.

        Args:
            x: training images ``(N, *spatial)`` float32, normalised units.
            y: labels, same shape.
            clean_x: the unprotected images (``mix`` only; for a clean run pass ``x`` itself or ``None``).
            groups: ``(N,)`` case index per sample (``mix`` only; ``None`` treats every sample as its own case).
            rng: randomness for ``mix``.

        Returns:
            ``(x, y)``; new arrays when changed, the inputs themselves otherwise.
        """
        step = DEFENSES.get(self.name).prepare
        if step is None:
            return x, y
        return step(self, x, y, clean_x, groups, rng), y

    def on_batch(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        model: torch.nn.Module,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Transform one training batch ``(B, 1, *spatial)`` inside the loop; identity for data-level defenses."""
        step = DEFENSES.get(self.name).on_batch
        if step is None:
            return x, y
        return step(self, x, y, model, loss_fn, generator)


def _mix(d: Defense, x, y, clean_x, groups, rng):  # noqa: ANN001 - registry entry
    if clean_x is None:
        return x
    groups = np.arange(len(x)) if groups is None else groups
    return mix_clean(x, clean_x, groups, ratio=d.poison_ratio, rng=rng or np.random.default_rng(0))[0]


def _augment(d: Defense, x, y, model, loss_fn, generator):  # noqa: ANN001 - registry entry
    return nnunet_augment(x, y, generator=generator)


@dataclass(frozen=True)
class _Entry:
    """A defense's registry entry: its summary and its data and batch steps (``None`` = nothing at that stage)."""

    summary: str
    prepare: Callable | None = None
    on_batch: Callable | None = None


#: Every defense by name (the single list; :data:`DEFENSE_NAMES` and the CLI help read it).
DEFENSES: Registry[_Entry] = Registry(
    "defense",
    {
        "none": _Entry("no defense"),
        "adversarial": _Entry(
            "PGD adversarial training on the training loss, L-inf 8/255, 3 steps",
            on_batch=lambda d, x, y, model, loss_fn, g: (
                pgd_attack(model, loss_fn, x, y, eps=d.eps, steps=d.steps, generator=g),
                y,
            ),
        ),
        "jpeg": _Entry(
            "JPEG quality 75 of every slice (uint8 by slice min/max)",
            prepare=lambda d, x, *_: jpeg_slices(x, quality=d.quality),
        ),
        "quantize": _Entry(
            "8-bit quantisation of every slice (by slice min/max)", prepare=lambda d, x, *_: quantize_slices(x)
        ),
        "gaussian": _Entry(
            "Gaussian filter, sigma 1 voxel", prepare=lambda d, x, *_: gaussian_filter_samples(x, sigma=d.sigma)
        ),
        "median": _Entry(
            "median filter, 3 voxels per axis", prepare=lambda d, x, *_: median_filter_samples(x, size=d.size)
        ),
        "augment": _Entry(
            "nnU-Net v2 2.8.1 training augmentation per batch (umed.audit.augment; deviations listed there)",
            on_batch=_augment,
        ),
        "intensity": _Entry(
            "intensity augmentation per batch: gamma 0.7-1.5, scale +-10%, Gaussian noise 0.03 (each p 0.5)",
            on_batch=lambda d, x, y, model, loss_fn, g: (intensity_augment(x, generator=g), y),
        ),
        "downsample": _Entry(
            "every slice averaged 2x2 and interpolated back (training on half-size slices)",
            prepare=lambda d, x, *_: downsample_slices(x),
        ),
        "mix": _Entry(
            "poison ratio 0.5: half the training cases replaced by their clean versions; compared with a victim "
            "trained on the clean half alone",
            prepare=_mix,
        ),
    },
)

DEFENSE_NAMES = DEFENSES.names()


def get_defense(name: str) -> Defense:
    """The :class:`Defense` called ``name`` (case-insensitive), with its default settings.

    Raises:
        ConfigError: unknown name (the message lists the valid ones).

    Example:
        >>> get_defense("gaussian").sigma
        1.0
    """
    key = DEFENSES.key(name)
    return Defense(name=key, summary=DEFENSES.get(name).summary)
