"""umed's normalised intensity space: file units mapped linearly to about [0, 1].

Every budget (``eps_contour``, ``eps_texture``, ``eps_cap``), every PSNR/SSIM and every "change in /255" in umed is
measured in this space, with ``data_range = 1``: an L-inf budget of 8/255 means 8/255 of the case's mapping span
``high - low`` in file units (e.g. 8/255 x 2000 HU = 62.7 HU for a CT window of -1000..1000 HU).

The mapping is fitted per case: robust percentiles (0.5 and 99.5 by default) of the image for MR, PET, EM and other
modalities without absolute units, or a fixed window in file units (Hounsfield units for CT). It is a plain affine
map and is *not* clipped, so voxels outside ``[low, high]`` land outside ``[0, 1]`` and a voxel the protector leaves
untouched maps back to its original value (exactly, once :func:`umed.io.quantize` rounds it to what the file stores).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from umed.errors import ConfigError

__all__ = ["IntensityMapping", "fit_mapping"]

MappingMode = Literal["percentile", "window"]


@dataclass(frozen=True)
class IntensityMapping:
    """Affine map between file units and umed's normalised space: ``u = (x - low) / (high - low)``.

    Attributes:
        low: file-unit value mapped to 0.
        high: file-unit value mapped to 1 (always ``> low``).
        mode: how it was fitted: ``"percentile"`` or ``"window"``.

    Example:
        >>> mapping = IntensityMapping(-1000.0, 1000.0, "window")
        >>> float(mapping.to_unit(np.array([0.0]))[0])
        0.5
    """

    low: float
    high: float
    mode: MappingMode = "percentile"

    def __post_init__(self) -> None:
        if not (np.isfinite(self.low) and np.isfinite(self.high)) or self.high <= self.low:
            raise ConfigError(f"intensity mapping: expected finite low < high (got low={self.low}, high={self.high})")
        if self.mode not in ("percentile", "window"):
            raise ConfigError(f"intensity mapping: expected mode 'percentile' or 'window' (got {self.mode!r})")

    @property
    def span(self) -> float:
        """``high - low`` in file units: the file-unit size of a change of 1.0 in normalised space."""
        return float(self.high) - float(self.low)

    def to_unit(self, x: np.ndarray) -> np.ndarray:
        """Map file units to normalised units (not clipped).

        Args:
            x: any shape, any real dtype, file units.

        Returns:
            float32 array of ``x``'s shape, ``(x - low) / (high - low)`` computed in float64 then rounded to float32.
        """
        x = np.asarray(x)
        return ((x.astype(np.float64, copy=False) - self.low) / self.span).astype(np.float32)

    def from_unit(self, u: np.ndarray) -> np.ndarray:
        """Map normalised units back to file units (not clipped, not rounded to the file's dtype).

        Args:
            u: any shape, normalised units.

        Returns:
            float64 array of ``u``'s shape in file units, ``u * (high - low) + low``. Pass it through
            :func:`umed.io.quantize` to get the values the file can store.
        """
        return np.asarray(u).astype(np.float64, copy=False) * self.span + self.low

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form: ``{"mode": ..., "low": ..., "high": ...}`` with plain floats."""
        return {"mode": self.mode, "low": float(self.low), "high": float(self.high)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IntensityMapping:
        """Rebuild a mapping from :meth:`to_dict`'s output.

        Raises:
            ConfigError: a key is missing or a value is invalid.
        """
        try:
            return cls(low=float(data["low"]), high=float(data["high"]), mode=data.get("mode", "percentile"))
        except (KeyError, TypeError, ValueError) as error:
            raise ConfigError(f"intensity mapping: expected keys low, high, mode (got {data!r})") from error


def fit_mapping(
    array: np.ndarray,
    *,
    mode: MappingMode = "percentile",
    percentiles: Sequence[float] = (0.5, 99.5),
    window: Sequence[float] | None = None,
    mask: np.ndarray | None = None,
) -> IntensityMapping:
    """Fit the normalised-space mapping of one case.

    Args:
        array: image in file units, any shape (``(H, W)`` or ``(X, Y, Z)``), finite values.
        mode: ``"percentile"`` (robust, per case) or ``"window"`` (fixed, e.g. CT).
        percentiles: lower and upper percentiles (0..100) for ``mode="percentile"``.
        window: ``(low, high)`` in file units for ``mode="window"``, e.g. ``(-1000, 1000)`` HU.
        mask: optional bool array of ``array``'s shape; percentiles are taken inside it (the whole image when it
            selects nothing).

    Returns:
        The mapping. A constant image (or percentiles that coincide) gets ``high = low + 1`` rather than a zero span.

    Raises:
        ConfigError: unknown mode, missing or inverted window, percentiles outside 0..100 or not increasing, or a
            mask of another shape.
    """
    if mode == "window":
        if window is None or len(window) != 2:
            raise ConfigError(f"window: mode 'window' needs (low, high) in file units (got {window!r})")
        low, high = float(window[0]), float(window[1])
        if not high > low:
            raise ConfigError(f"window: expected low < high (got low={low}, high={high})")
        return IntensityMapping(low, high, "window")
    if mode != "percentile":
        raise ConfigError(f"intensity mode: expected 'percentile' or 'window' (got {mode!r})")
    lower, upper = (float(p) for p in percentiles)
    if not 0 <= lower < upper <= 100:
        raise ConfigError(f"percentiles: expected 0 <= low < high <= 100 (got {tuple(percentiles)})")
    values = np.asarray(array)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != values.shape:
            raise ConfigError(f"mask: shape differs from the image (expected {values.shape}, got {mask.shape})")
        if mask.any():
            values = values[mask]
    if values.size == 0:
        return IntensityMapping(0.0, 1.0, "percentile")
    low, high = percentiles_of(values, (lower, upper))
    if not high > low:
        high = low + 1.0
    return IntensityMapping(low, high, "percentile")


_COUNT_STEP = 1 << 23  # voxels per counting step: bounded int32 temporaries on a CT


def percentiles_of(values: np.ndarray, q: Sequence[float]) -> tuple[float, ...]:
    """:func:`numpy.percentile` (its default ``linear`` method) of all of ``values`` at each of ``q`` (0..100).

    Integer arrays of at most 16 bits (CT, most MRI) are counted instead of partitioned: one pass of
    :func:`numpy.bincount` over the possible values gives every order statistic, so a 512x512x400 int16 CT costs a
    fraction of a partition of its 105 million voxels and no copy of it. The interpolation between the two order
    statistics around ``(n - 1) * q / 100`` is numpy's (``a + (b - a) * g``, or ``b - (b - a) * (1 - g)`` for
    ``g >= 0.5``), in float64 (numpy subtracts in the array's dtype, which wraps for two order statistics more than
    half the dtype's range apart; otherwise the results are equal). Other dtypes go to :func:`numpy.percentile`.

    Example:
        >>> values = np.array([[3, 1], [4, 1]], dtype=np.int16)
        >>> percentiles_of(values, (0.0, 50.0, 100.0)) == tuple(float(v) for v in np.percentile(values, [0, 50, 100]))
        True
    """
    values = np.asarray(values)
    if values.dtype.kind not in "iu" or values.dtype.itemsize > 2 or values.size == 0:
        return tuple(float(v) for v in np.percentile(values, list(q)))
    lowest = int(np.iinfo(values.dtype).min)
    counts = np.zeros(1 << (8 * values.dtype.itemsize), dtype=np.int64)
    flat = values.ravel(order="K")  # a view for C- or Fortran-ordered arrays: the order does not matter
    for start in range(0, flat.size, _COUNT_STEP):
        keys = flat[start : start + _COUNT_STEP].astype(np.int32) - lowest
        counts += np.bincount(keys, minlength=counts.size)
    cumulative = np.cumsum(counts)
    n = int(flat.size)

    def at_rank(rank: int) -> float:  # the value of 0-based rank ``rank`` in sorted order
        return float(int(np.searchsorted(cumulative, rank, side="right")) + lowest)

    result = []
    for percent in q:
        virtual = (n - 1) * (float(percent) / 100.0)
        below = math.floor(virtual)
        gamma = virtual - below
        a, b = at_rank(below), at_rank(min(below + 1, n - 1))
        result.append(a + (b - a) * gamma if gamma < 0.5 else b - (b - a) * (1 - gamma))
    return tuple(result)
