"""The interface every protector (UMed and the baselines) implements.

A protector works in umed's *normalised* intensity space (see :mod:`umed.intensity`: file units mapped to [0, 1],
``data_range = 1``) on 2D slices, batched. The pipeline in :mod:`umed.protect` maps each case to that space, cuts
it into slices along the last axis (axial for volumes), calls :meth:`Protector.perturb` on the slices that hold
foreground, and maps the result back to file units and the file's dtype.

Budgets are L-inf bounds in normalised units: ``eps_contour`` on the contour band, ``eps_texture`` inside the ROI
interior (further scaled by the texture map tau(x) for UMed). Every method must return a perturbation that is zero
outside ``foreground | band`` (see :func:`umed.regions.support`) and within its budget there.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from umed import regions
from umed.errors import ConfigError

__all__ = [
    "Budget",
    "SliceBatch",
    "Protector",
    "ProgressCallback",
    "PreparedSlices",
    "prepare_slices",
    "slice_scales",
    "finalize",
]

ProgressCallback = Callable[[str, int, int], None]
"""``callback(task_description, completed, total)``; the CLI turns it into a rich progress bar."""


@dataclass(frozen=True)
class Budget:
    """L-inf budget in normalised intensity units (fractions of ``data_range = 1``).

    Attributes:
        eps_contour: bound on the contour band (default 8/255).
        eps_texture: bound inside the ROI interior (default 8/255); UMed scales it by tau(x) in [tau_min, 1].
        band_width: contour band half-width in voxels: band = dilate(F, r) minus erode(F, r).
    """

    eps_contour: float = 8 / 255
    eps_texture: float = 8 / 255
    band_width: int = 3

    @property
    def eps_max(self) -> float:
        """The largest change any voxel may receive."""
        return max(self.eps_contour, self.eps_texture)


@dataclass
class SliceBatch:
    """A batch of 2D slices in normalised space.

    Shape:
        images: ``(B, H, W)`` float32, mostly in [0, 1] (robust percentiles leave a few voxels outside).
        structures: ``(B, H, W)`` bool, the structure to protect (label in the chosen set).
        eps_scale: ``(B,)`` float32 multiplier of the budget per slice (per-case epsilon from a target PSNR); ones
            when not given.
        keys: one stable string per slice (``"case_id/z"``) used to seed per-sample randomness.
    """

    images: np.ndarray
    structures: np.ndarray
    keys: list[str]
    eps_scale: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.images.shape != self.structures.shape or self.images.ndim != 3:
            raise ValueError(
                f"SliceBatch: images and structures must both be (B, H, W) (got {self.images.shape} and "
                f"{self.structures.shape})"
            )
        if len(self.keys) != self.images.shape[0]:
            raise ValueError(f"SliceBatch: {len(self.keys)} keys for {self.images.shape[0]} slices")
        if self.eps_scale is None:
            self.eps_scale = np.ones(self.images.shape[0], dtype=np.float32)


class Protector(ABC):
    """A method that makes a dataset unlearnable.

    Lifecycle: ``fit`` on the training slices (trains generators / surrogates; model-free methods only draw their
    patterns), then ``perturb`` any batch of slices. ``state_dict``/``load_state_dict`` and ``config`` let
    :mod:`umed.protect.protector_io` save it as weights (a plain tensor dict, read back with ``weights_only=True``)
    plus JSON.
    """

    name: ClassVar[str]

    def __init__(self, budget: Budget, *, seed: int = 0, **settings: Any) -> None:
        self.budget = budget
        self.seed = seed
        self.settings = settings

    @abstractmethod
    def fit(self, batch: SliceBatch, *, progress: ProgressCallback | None = None) -> dict[str, Any]:
        """Learn whatever the method needs from the training slices; return a small JSON-able training log."""

    @abstractmethod
    def perturb(self, batch: SliceBatch) -> np.ndarray:
        """Return the perturbation ``(B, H, W)`` float32: zero outside the support, ``|delta| <= eps * eps_scale``.

        Must be deterministic given ``self.seed`` and ``batch.keys`` (same inputs, same output bytes).
        """

    def config(self) -> dict[str, Any]:
        """JSON-able description: method name, budget, seed and settings."""
        return {
            "method": self.name,
            "budget": {
                "eps_contour": self.budget.eps_contour,
                "eps_texture": self.budget.eps_texture,
                "band_width": self.budget.band_width,
            },
            "seed": self.seed,
            "settings": dict(self.settings),
        }

    def state_dict(self) -> dict[str, Any]:
        """Tensors (and plain numbers) needed to rebuild a fitted protector; empty for stateless methods."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027 (a no-op for stateless methods)
        """Restore what :meth:`state_dict` returned."""


@dataclass
class PreparedSlices:
    """A :class:`SliceBatch` turned into the arrays the protectors work on.

    Shape:
        images: ``(N, H, W)`` float32. fg, support: ``(N, H, W)`` bool. bound: ``(N, H, W)`` float32,
        ``eps_max * eps_scale`` on the support and 0 elsewhere. eps_scale: ``(N,)`` float32.
    """

    images: np.ndarray
    fg: np.ndarray
    support: np.ndarray
    bound: np.ndarray
    eps_scale: np.ndarray
    keys: list[str]


def prepare_slices(batch: SliceBatch, budget: Budget, eps: float | None = None) -> PreparedSlices:
    """Support and per-voxel bound of a batch (``eps`` defaults to ``budget.eps_max``), slice by slice."""
    images = np.asarray(batch.images, dtype=np.float32)
    fg = np.asarray(batch.structures, dtype=bool)
    allowed = regions.support(fg, budget.band_width, batch=True)
    scale = slice_scales(batch)
    per_slice = np.float32(budget.eps_max if eps is None else eps) * scale
    bound = np.where(allowed, per_slice[:, None, None], np.float32(0)).astype(np.float32)
    return PreparedSlices(images, fg, allowed, bound, scale, list(batch.keys))


def slice_scales(batch: SliceBatch) -> np.ndarray:
    """The batch's ``eps_scale``, ``(B,)`` float32, checked: one finite value >= 0 per slice.

    Raises:
        ConfigError: a wrong count, or a value that is not finite or is negative.
    """
    count = np.asarray(batch.images).shape[0]
    scale = np.asarray(batch.eps_scale, dtype=np.float32).reshape(-1)
    if scale.shape[0] != count or not np.all(np.isfinite(scale)) or np.any(scale < 0):
        raise ConfigError(f"eps_scale: expected {count} finite values >= 0 (got shape {scale.shape})")
    return scale


def finalize(delta: np.ndarray, bound: np.ndarray) -> np.ndarray:
    """Enforce the contract on a numpy result: float32, ``|delta| <= bound``, exactly +0.0 where ``bound == 0``."""
    delta = np.clip(delta.astype(np.float32), -bound, bound)
    return np.where(bound > 0, delta, np.float32(0)).astype(np.float32)
