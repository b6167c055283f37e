"""The family of keyed marks: one 2D texture per seed, repeated over the image plane.

A mark is a small tile of ``cells x cells`` square blocks of ``cell`` voxels, each block +1 or -1 (exactly half of
each, in an order drawn from the seed, so every mark has zero mean and the same energy), repeated with period
``cells * cell`` along both in-plane axes, anchored at voxel (0, 0) of every slice. A convolutional network is
translation-equivariant, so what it can learn from a mark is the tile's local pattern, up to shifts; two seeds give
two tiles whose correlation is about ``1 / cells`` (one standard deviation), so a network that learned one answers the
others much less. The same tile in every slice makes the mark consistent across slices, for 3D networks.

The secret key, the probes' control marks and the marks that ``umed protect`` writes are all drawn from this one
family, with the same settings: that is what makes the verification test exact (docs/verify.md).

Example:
    >>> family = MarkFamily(cell=2, cells=4)
    >>> tile = family.tile(7)
    >>> tile.shape, float(tile.sum()), sorted(set(tile.ravel().tolist()))
    ((8, 8), 0.0, [-1.0, 1.0])
    >>> field = family.field(7, (10, 12))
    >>> bool((field[:8, :8] == tile).all()), bool((field[8:, 8:] == tile[:2, :4]).all())
    (True, True)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from umed.errors import ConfigError

__all__ = ["KINDS", "MarkFamily"]

KINDS = ("tile", "grating", "edge")


@dataclass(frozen=True)
class MarkFamily:
    """Settings of the mark family (one source: ``umed/configs/umed.yaml``'s ``mark`` section reads into this).

    Attributes:
        cell: block size in voxels (in-plane). 3 keeps most of the mark's energy through a Gaussian blur of sigma 1
            and a resampling to half size.
        cells: blocks per tile side; the tile period is ``cell * cells`` voxels.
    """

    cell: int = 3
    cells: int = 6
    kind: str = "tile"
    period_min: float = 2.0
    period_max: float = 4.0
    carrier_spread: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"mark family: unknown kind {self.kind!r} (expected one of {', '.join(KINDS)})")
        if not 0.0 <= self.carrier_spread <= 0.25:
            raise ConfigError(
                f"mark family: carrier_spread must be in [0, 0.25] cycles per voxel (got {self.carrier_spread})"
            )
        if not 2.0 <= self.period_min <= self.period_max:
            raise ConfigError(
                f"mark family: expected 2 <= period_min <= period_max voxels (got {self.period_min}, {self.period_max})"
            )
        for name in ("cell", "cells"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"mark family: {name} must be an integer >= 1 (got {value!r})")
        if (self.cells * self.cells) % 2:
            raise ConfigError(f"mark family: cells * cells must be even for a zero-mean tile (got cells={self.cells})")

    @property
    def period(self) -> int:
        """The tile's side in voxels."""
        return self.cell * self.cells

    def signs(self, seed: int) -> np.ndarray:
        """The ``(cells, cells)`` block signs of the mark ``seed``: half +1, half -1, in a seeded order."""
        n = self.cells * self.cells
        values = np.repeat(np.array([1.0, -1.0], np.float32), n // 2)
        order = np.random.default_rng(_seed_sequence(seed)).permutation(n)
        return values[order].reshape(self.cells, self.cells)

    def tile(self, seed: int) -> np.ndarray:
        """The ``(period, period)`` float32 tile of the mark ``seed``, values +-1."""
        return np.kron(self.signs(seed), np.ones((self.cell, self.cell), np.float32)).astype(np.float32)

    def grating(self, seed: int) -> tuple[float, float, float]:
        """The grating of the mark ``seed``: ``(period, angle, phase)``, period uniform in
        ``[period_min, period_max]`` voxels, angle uniform in ``[0, pi)``, phase uniform in ``[0, 2 pi)``."""
        rng = np.random.default_rng(_seed_sequence(seed))
        period, angle, phase = (
            rng.uniform(self.period_min, self.period_max),
            rng.uniform(0, np.pi),
            rng.uniform(0, 2 * np.pi),
        )
        return float(period), float(angle), float(phase)

    def edge(self, seed: int) -> tuple[int, float, float, float]:
        """The edge wave of the mark ``seed``: ``(axis, frequency, phase, carrier)``: a carrier of ``carrier`` cycles
        per voxel along ``axis`` (0.5, period 2, the edge of the spectrum where natural images have the least
        energy; uniform in ``[0.5 - carrier_spread, 0.5]``) times a wave of ``frequency`` uniform in [0, 0.5] along
        the other axis (0.5 with carrier 0.5: the checkerboard)."""
        rng = np.random.default_rng(_seed_sequence(seed))
        axis, frequency, phase = int(rng.integers(0, 2)), rng.uniform(0.0, 0.5), rng.uniform(0, 2 * np.pi)
        carrier = 0.5 - rng.uniform(0.0, self.carrier_spread) if self.carrier_spread > 0 else 0.5
        return axis, float(frequency), float(phase), float(carrier)

    def field(self, seed: int, shape: tuple[int, int], origin: tuple[int, int] = (0, 0)) -> np.ndarray:
        """The mark ``seed`` over an in-plane grid of ``shape`` whose first voxel sits at ``origin`` of the slice."""
        rows = (np.arange(shape[0]) + origin[0])[:, None]
        cols = (np.arange(shape[1]) + origin[1])[None, :]
        if self.kind == "grating":
            period, angle, phase = self.grating(seed)
            wave = 2 * np.pi * (rows * np.cos(angle) + cols * np.sin(angle)) / period + phase
            return np.cos(wave).astype(np.float32)
        if self.kind == "edge":
            axis, frequency, phase, carrier = self.edge(seed)
            fast, slow = (rows, cols) if axis == 0 else (cols, rows)
            return (np.cos(2 * np.pi * carrier * fast) * np.cos(2 * np.pi * frequency * slow + phase)).astype(
                np.float32
            )
        tile = self.tile(seed)
        rows = (np.arange(shape[0]) + origin[0]) % self.period
        cols = (np.arange(shape[1]) + origin[1]) % self.period
        return tile[np.ix_(rows, cols)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MarkFamily:
        """Rebuild from :meth:`to_dict`'s output; a bad value is a :class:`ConfigError`."""
        try:
            return cls(
                cell=int(data["cell"]),
                cells=int(data["cells"]),
                kind=str(data.get("kind", "tile")),
                period_min=float(data.get("period_min", 2.0)),
                period_max=float(data.get("period_max", 4.0)),
                carrier_spread=float(data.get("carrier_spread", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ConfigError(f"mark family: expected integer keys cell, cells (got {data!r})") from error


def _seed_sequence(seed: int) -> np.random.SeedSequence:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"mark family: a mark seed is an integer >= 0 (got {seed!r})")
    return np.random.SeedSequence([int(seed), 0x6D61726B])  # "mark": this family's stream, apart from other uses
