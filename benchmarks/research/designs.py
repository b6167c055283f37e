"""Candidate designs of the issue-14 screen, by name (one registry; every design measured is kept here).

A design is either a package protector (method + config + overrides, protected exactly as the efficacy benchmark
does) or a fixed unit pattern on the structure + contour band, rescaled per case to the target PSNR by
:func:`harness.protect_fixed`. Fixed patterns are built per axial slice (2D, as every victim sees them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "umed" / "configs"  # the shipped configs (moved into the package)
PSNR50 = {"target_psnr": 50.0, "eps_cap": "24/255"}


@dataclass(frozen=True)
class Design:
    name: str
    summary: str
    method: str | None = None  # package protector; None = fixed pattern
    config: Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    pattern: Callable[[Any], np.ndarray] | None = None


# ------------------------------------------------------------------------------------------------ fixed patterns


def _per_slice(case: Any, fn: Callable[[np.ndarray, np.ndarray, int], np.ndarray]) -> np.ndarray:
    """Apply ``fn(core_slice, image_slice, z)`` to every axial slice holding core; zero elsewhere."""
    from umed.regions import support

    out = np.zeros(case.core.shape, np.float32)
    for z in np.flatnonzero(case.core.any(axis=(0, 1))):
        fg = case.core[..., z]
        sup = support(fg, 3)
        out[..., z] = np.where(sup, fn(fg, case.clean[..., z], int(z)), 0.0)
    return out


def _grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    return np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")


def checker(block: int, outer: float = -1.0) -> Callable[[Any], np.ndarray]:
    """+-1 checkerboard of ``block``-voxel blocks on the structure, ``outer`` x it on the band outside."""

    def fn(fg: np.ndarray, img: np.ndarray, z: int) -> np.ndarray:
        r, c = _grid(fg.shape)
        ck = (((r // block) + (c // block)) % 2 * 2 - 1).astype(np.float32)
        return np.where(fg, ck, outer * ck)

    return lambda case: _per_slice(case, fn)


def multiband(blocks: tuple[int, ...], weights: tuple[float, ...]) -> Callable[[Any], np.ndarray]:
    """Sum of checkerboards of several block sizes (budget split by ``weights`` in amplitude)."""
    parts = [checker(b) for b in blocks]
    return lambda case: sum(w * p(case) for w, p in zip(weights, parts))


def blobs(sigma: float, seed: int = 0, outer: float = -1.0) -> Callable[[Any], np.ndarray]:
    """Smooth random sign field (Gaussian-filtered noise, sigma voxels, then sign) fixed over slices: a mid-band
    label-aligned texture whose energy sits at periods of about 4 sigma."""
    rng = np.random.default_rng(seed)
    field_ = np.sign(ndimage.gaussian_filter(rng.standard_normal((240, 240)), sigma)).astype(np.float32)

    def fn(fg: np.ndarray, img: np.ndarray, z: int) -> np.ndarray:
        return np.where(fg, field_, outer * field_)

    return lambda case: _per_slice(case, fn)


def stripes(period: int, angle_deg: float = 0.0) -> Callable[[Any], np.ndarray]:
    """Oriented sinusoidal stripes of ``period`` voxels on the structure (opposite sign outside)."""
    theta = np.deg2rad(angle_deg)

    def fn(fg: np.ndarray, img: np.ndarray, z: int) -> np.ndarray:
        r, c = _grid(fg.shape)
        wave = np.sign(np.cos(2 * np.pi * (r * np.cos(theta) + c * np.sin(theta)) / period)).astype(np.float32)
        return np.where(fg, wave, -wave)

    return lambda case: _per_slice(case, fn)


def dots(spacing: int, radius: float) -> Callable[[Any], np.ndarray]:
    """A lattice of bright dots (Gaussian bumps of ``radius``) every ``spacing`` voxels on the structure, dark on
    the band outside: sparse, high-amplitude, mid-band blobs that a blur spreads but does not remove."""

    def fn(fg: np.ndarray, img: np.ndarray, z: int) -> np.ndarray:
        r, c = _grid(fg.shape)
        dr = (r % spacing) - spacing // 2
        dc = (c % spacing) - spacing // 2
        bump = np.clip(2 * np.exp(-(dr**2 + dc**2) / (2 * radius**2)), 0, 1).astype(np.float32)  # flat top
        return np.where(fg, bump, -bump)

    return lambda case: _per_slice(case, fn)


def contrast(gain_inside: float = 1.0) -> Callable[[Any], np.ndarray]:
    """Multiplicative design: the structure's own local contrast amplified (x - local mean), sign flipped on the band
    outside: a per-region filter (CUDA-like, bounded by the PSNR rescale)."""

    def fn(fg: np.ndarray, img: np.ndarray, z: int) -> np.ndarray:
        detail = img - ndimage.uniform_filter(img, 5)
        detail = np.clip(detail / max(float(np.percentile(np.abs(detail[fg]), 90)), 1e-6), -1, 1)  # robust unit
        return np.where(fg, gain_inside * detail, -detail).astype(np.float32)

    return lambda case: _per_slice(case, fn)


def keyed_edge(key_seed: int) -> Callable[[Any], np.ndarray]:
    """The keyed mark ``umed protect`` writes by default (umed/configs/verify.yaml: the edge wave) for a fixed key
    seed, on the structure only (the band is left unchanged, as the shipped mark does)."""
    from umed.verify.settings import VerifySettings

    family = VerifySettings.shipped().family

    def fn(fg: np.ndarray, img: np.ndarray, z: int) -> np.ndarray:
        return np.where(fg, family.field(key_seed, fg.shape), 0.0).astype(np.float32)

    return lambda case: _per_slice(case, fn)


def sign_step(inside: float = 1.0) -> Callable[[Any], np.ndarray]:
    """Label-aligned step: +inside on the structure, -1 on the outer band."""
    return lambda case: _per_slice(case, lambda fg, img, z: np.where(fg, inside, -1.0).astype(np.float32))


# ------------------------------------------------------------------------------------------------------ registry

_UMED = CONFIGS / "brats_tumour_core.yaml"
_NO_MARK = {"mark": False}  # the UMed designs fit the generators (the shipped mark would take the whole budget)
_EOT = ["gaussian", "median", "downsample", "augment", "spectral"]

DESIGNS: dict[str, Design] = {}


def _add(design: Design) -> None:
    DESIGNS[design.name] = design


for _m in ("random", "lsp", "ar", "tap", "em", "sep", "salm"):
    _add(
        Design(
            f"{_m}", f"{_m} baseline, configs/methods/{_m}.yaml, 50 dB", _m, CONFIGS / "methods" / f"{_m}.yaml", PSNR50
        )
    )
_add(
    Design(
        "umed",
        "UMed shipped (configs/brats_tumour_core.yaml): trained generators + period-2 prior",
        "umed",
        _UMED,
        _NO_MARK,
    )
)
_add(
    Design(
        "umed_prior_only",
        "UMed fixed period-2 prior alone (steps 0: untrained generators)",
        "umed",
        _UMED,
        _NO_MARK,
        settings={"steps": 0},
    )
)
_add(
    Design(
        "umed_eot",
        "UMed trained with EOT over gaussian/median/downsample/augment/spectral",
        "umed",
        _UMED,
        _NO_MARK,
        settings={"eot": _EOT},
    )
)
_add(
    Design(
        "umed_eot_noprior",
        "UMed + EOT, no pattern prior (generators free)",
        "umed",
        _UMED,
        _NO_MARK,
        settings={"eot": _EOT, "pattern_init": "none"},
    )
)
_add(
    Design(
        "umed_noprior",
        "UMed trained generators, no pattern prior, no EOT",
        "umed",
        _UMED,
        _NO_MARK,
        settings={"pattern_init": "none"},
    )
)
_add(
    Design(
        "umed_eot_ckb2",
        "UMed + EOT, period-4 checker prior (2-voxel blocks)",
        "umed",
        _UMED,
        _NO_MARK,
        settings={"eot": _EOT, "pattern_patch": 2},
    )
)
_add(
    Design(
        "umed_eot_ckb3",
        "UMed + EOT, period-6 checker prior (3-voxel blocks)",
        "umed",
        _UMED,
        _NO_MARK,
        settings={"eot": _EOT, "pattern_patch": 3},
    )
)
_add(Design("umed_eot_blur", "UMed + EOT over gaussian only", "umed", _UMED, _NO_MARK, settings={"eot": ["gaussian"]}))
_add(
    Design(
        "umed_ckb2_noeot",
        "UMed, period-4 checker prior, no EOT",
        "umed",
        _UMED,
        _NO_MARK,
        settings={"pattern_patch": 2},
    )
)

_add(Design("ckb1", "fixed period-2 checker (1-voxel blocks), opposite on outer band", pattern=checker(1)))
_add(Design("ckb2", "fixed period-4 checker (2-voxel blocks)", pattern=checker(2)))
_add(Design("ckb3", "fixed period-6 checker (3-voxel blocks)", pattern=checker(3)))
_add(Design("ckb4", "fixed period-8 checker (4-voxel blocks)", pattern=checker(4)))
_add(Design("multi_1_3", "period-2 + period-6 checkers, amplitude 1:1", pattern=multiband((1, 3), (1.0, 1.0))))
_add(Design("multi_1_2", "period-2 + period-4 checkers, amplitude 1:1", pattern=multiband((1, 2), (1.0, 1.0))))
_add(Design("blobs2", "smooth random sign field, sigma 2 (periods ~8)", pattern=blobs(2.0)))
_add(Design("blobs1", "smooth random sign field, sigma 1 (periods ~4)", pattern=blobs(1.0)))
_add(Design("stripes6", "square-wave stripes, period 6, horizontal", pattern=stripes(6)))
_add(Design("stripes6_45", "square-wave stripes, period 6, 45 degrees", pattern=stripes(6, 45)))
_add(Design("dots6", "flat-top dot lattice, spacing 6, radius 1", pattern=dots(6, 1.0)))
_add(Design("dots8", "flat-top dot lattice, spacing 8, radius 1.5", pattern=dots(8, 1.5)))
_add(
    Design(
        "contrast",
        "own local detail amplified in the structure, inverted on the band (multiplicative)",
        pattern=contrast(),
    )
)
_add(
    Design(
        "contrast_flat",
        "own local detail removed in the structure (gain -1), kept sign on the band",
        pattern=contrast(-1.0),
    )
)
_add(
    Design(
        "ckb1_dots8",
        "period-2 checker + dot lattice (spacing 8, radius 1.5), amplitude 1:2",
        pattern=lambda case: checker(1)(case) + 2.0 * dots(8, 1.5)(case),
    )
)
_add(Design("step", "label-aligned step +1 inside, -1 on outer band", pattern=sign_step()))


# ---- issue 22: generators that learn (no saturation reward, a pool of young surrogates), REM-style EM, the mark
LEARN = {  # the generators that learn (issue 22): also what benchmarks/phantom_seeds.py fits
    "saturation": 0.0,
    "pattern_init": "none",
    "surrogates": 2,
    "surrogate_every": 2,
    "surrogate_reinit_every": 60,
    "steps": 200,
    "crop": 64,
}
_add(
    Design(
        "umed_learn",
        "UMed generators that learn: no saturation, no prior, 2 surrogates of staggered ages (reinit every 60)",
        "umed",
        _UMED,
        _NO_MARK,
        settings=LEARN,
    )
)
_add(
    Design(
        "umed_learn_nocdc",
        "umed_learn with a plain contour generator (CDC theta 0)",
        "umed",
        _UMED,
        _NO_MARK,
        settings={**LEARN, "theta": 0.0},
    )
)
_add(
    Design(
        "umed_learn_prior",
        "umed_learn started at the period-2 prior with gain 0.5 (tanh 0.46: the loss can move it)",
        "umed",
        _UMED,
        _NO_MARK,
        settings={**LEARN, "pattern_init": "checker", "pattern_gain": 0.5},
    )
)
_add(
    Design(
        "umed_learn_eot",
        "umed_learn with EOT over gaussian, downsample, augment",
        "umed",
        _UMED,
        _NO_MARK,
        settings={**LEARN, "eot": ["gaussian", "downsample", "augment"]},
    )
)
_add(
    Design(
        "em_eot",
        "EM with EOT inside every PGD and surrogate step (REM-style): gaussian, downsample, augment; 50 dB",
        "em",
        CONFIGS / "methods" / "em.yaml",
        PSNR50,
        settings={"eot": ["gaussian", "downsample", "augment"]},
    )
)
_add(
    Design(
        "umed_learn_young",
        "umed_learn with a younger pool: 3 surrogates re-initialised every 30 steps, a surrogate step every step, "
        "generator lr 0.01, 300 steps",
        "umed",
        _UMED,
        _NO_MARK,
        settings={
            **LEARN,
            "surrogates": 3,
            "surrogate_reinit_every": 30,
            "surrogate_every": 1,
            "lr": 0.01,
            "steps": 300,
        },
    )
)
_add(
    Design(
        "umed_learn_gain1",
        "umed_learn started at the period-2 prior with gain 1 (tanh 0.76), no saturation",
        "umed",
        _UMED,
        _NO_MARK,
        settings={**LEARN, "pattern_init": "checker", "pattern_gain": 1.0},
    )
)
_add(Design("mark_edge0", "the shipped keyed mark (edge wave), key seed 0, structure only", pattern=keyed_edge(0)))
for _key in (1, 2, 3):
    _add(
        Design(
            f"mark_edge{_key}",
            f"the shipped keyed mark (edge wave), key seed {_key}, structure only",
            pattern=keyed_edge(_key),
        )
    )

_TILE = CONFIGS / "methods" / "tile.yaml"  # the shipped settings: the 4x4x2 tile (tile3d_p4)
_TILE16 = {"period": 16, "depth": 4, "train_steps": 300, "reinit_every": 50, "pattern_lr": 0.05}  # the first settings
_TILE_2D = {**_TILE16, "depth": 1, "surrogate_dims": 2, "batch_size": 8}
_add(
    Design(
        "tile3d",
        "learned class-wise zero-mean tile (16x16, period 4 along z) on the structure, min-min against young 3D "
        "UNets (a fresh one every 50 steps, 300 steps, 64x64x16 patches); 50 dB",
        "tile",
        _TILE,
        PSNR50,
        settings=_TILE16,
    )
)
_add(
    Design(
        "tile3d_flat",
        "tile3d with one tile for every slice (depth 1)",
        "tile",
        _TILE,
        PSNR50,
        settings={**_TILE16, "depth": 1},
    )
)
_add(
    Design(
        "tile2d",
        "learned class-wise zero-mean tile (16x16, the same on every slice), min-min against young 2D surrogates",
        "tile",
        _TILE,
        PSNR50,
        settings=_TILE_2D,
    )
)
_add(
    Design(
        "tile3d_p4",
        "tile3d with a 4x4x2 tile, 600 steps, a fresh 3D UNet every 100 steps, tile lr 0.1 (the shipped tile settings)",
        "tile",
        _TILE,
        PSNR50,
    )
)
_add(
    Design(
        "tile2d_trigger",
        "tile2d, each batch also holding copies with the tile moved onto other tissue and only it labelled",
        "tile",
        _TILE,
        PSNR50,
        settings={**_TILE_2D, "trigger": True},
    )
)
_add(
    Design(
        "tile3d_trigger",
        "tile3d, each batch also holding copies with the tile moved onto other tissue and only it labelled",
        "tile",
        _TILE,
        PSNR50,
        settings={**_TILE16, "trigger": True},
    )
)
for _name, _extra in (
    ("tile3d", _TILE16),
    ("tile3d_flat", {**_TILE16, "depth": 1}),
    ("tile2d", _TILE_2D),
):  # the first try
    _add(
        Design(
            f"{_name}_dc",
            f"{_name} without zero mean: the min-min learns a constant that brightens the structure",
            "tile",
            _TILE,
            PSNR50,
            settings={**_extra, "zero_mean": False},
        )
    )


def get(name: str) -> Design:
    if name not in DESIGNS:
        raise KeyError(f"unknown design {name!r} (expected one of {', '.join(DESIGNS)})")
    return DESIGNS[name]
