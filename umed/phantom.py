"""Synthetic phantoms: small textured "organ with lesions" images and label maps, for demos, examples and fast tests.

Each case is an elliptical body holding one large organ-like blob (a deformed ellipsoid, label 1) with one or two
lesions inside it (label 2, together 0.5-2% of the volume, as a tumour core is of a brain MRI). The lesion has the
organ's mean intensity and differs from it by its *texture*: a striped grating (period 3-4 voxels, random in-plane
orientation) where the organ carries only slow, strong intensity variations and fine noise. No single intensity
threshold separates it (the audit's threshold floor stays near 0.2), while a small convolutional network learns it
from a few cases in a few CPU-seconds. Intensities also get a slow bias field and Rician-like noise. Images are
written as NIfTI with a rotated (non-identity) affine and anisotropic spacing, alternately float32 and int16 with
``scl_slope`` / ``scl_inter`` (``image_dtype="mixed"``), so the demo exercises both storage paths.

These are not a model of any real anatomy or scanner; never use them to claim anything about real data.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from umed.errors import ConfigError

__all__ = ["make_phantom", "make_phantom_dataset"]

_SLOPE, _INTERCEPT = 0.25, -100.0  # int16 storage of the odd cases: file units = stored * 0.25 - 100
_SLOW, _FINE, _NOISE = 40.0, 8.0, 8.0  # organ/body texture: slow variations (sigma 4 voxels), fine grain, Rician
_GRATING_PERIOD, _GRATING_AMPLITUDE = (3.0, 4.0), (60.0, 70.0)  # the lesion's texture: voxels, intensity units


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Zero-mean, unit-variance white noise smoothed by a Gaussian of ``sigma`` voxels (periodic, via FFT), float32."""
    noise = rng.standard_normal(shape)
    spectrum = np.fft.rfftn(noise)
    frequencies = [np.fft.fftfreq(n) for n in shape[:-1]] + [np.fft.rfftfreq(shape[-1])]
    grids = np.meshgrid(*frequencies, indexing="ij", sparse=True)
    spectrum *= np.exp(-2.0 * (np.pi * sigma) ** 2 * sum(g**2 for g in grids))
    field = np.fft.irfftn(spectrum, s=shape, axes=tuple(range(len(shape))))
    return ((field - field.mean()) / (field.std() + 1e-8)).astype(np.float32)


def _grid(shape: tuple[int, ...]) -> list[np.ndarray]:
    """Coordinates in [-1, 1] along each axis, broadcastable (open grid)."""
    return list(np.ogrid[tuple(slice(-1.0, 1.0, complex(0, n)) for n in shape)])


def _grating(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Zero-mean stripes ``sin`` across the first two axes (random period in ``_GRATING_PERIOD`` voxels, random
    orientation and phase), constant along the third, float32 of ``shape`` in [-1, 1]."""
    theta = rng.uniform(0.0, np.pi)
    period = rng.uniform(*_GRATING_PERIOD)
    i, j = np.ogrid[: shape[0], : shape[1]]
    wave = np.sin((np.cos(theta) * i + np.sin(theta) * j) * (2 * np.pi / period) + rng.uniform(0.0, 2 * np.pi))
    return wave.reshape(wave.shape + (1,) * (len(shape) - 2)).astype(np.float32)


def _blob(
    coords: Sequence[np.ndarray], center: np.ndarray, radii: np.ndarray, rng: np.random.Generator, wobble: float
) -> np.ndarray:
    """A deformed ellipsoid: radius modulated by a few random low-frequency sines of the direction."""
    offsets = [c - m for c, m in zip(coords, center)]
    radius2 = sum((o / r) ** 2 for o, r in zip(offsets, radii))
    angle = np.arctan2(offsets[1], offsets[0])
    modulation = np.ones_like(angle)
    for k in (2, 3, 5):
        modulation = modulation + wobble / k * np.sin(k * angle + rng.uniform(0, 2 * np.pi))
    if len(offsets) == 3:
        modulation = modulation + wobble / 2 * np.sin(3 * offsets[2] / radii[2] + rng.uniform(0, 2 * np.pi))
    return radius2 <= modulation**2


def make_phantom(shape: Sequence[int], *, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One phantom image and its label map.

    Args:
        shape: ``(X, Y)`` or ``(X, Y, Z)``, each at least 16.
        rng: the generator all randomness comes from.

    Returns:
        ``(image, labels)``: ``image`` float32 of ``shape`` in arbitrary MR-like units (background about 0, tissue
        about 100..450), ``labels`` uint8 of ``shape`` with 0 background, 1 organ, 2 lesion (at least one voxel; the
        lesion has the organ's mean intensity and a striped texture of period 3-4 voxels).

    Raises:
        ConfigError: a shape with fewer than 2 or more than 3 axes, or an axis shorter than 16.
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) not in (2, 3) or min(shape[:2]) < 16 or (len(shape) == 3 and shape[2] < 4):
        raise ConfigError(f"phantom: shape must be (X, Y) or (X, Y, Z) with X, Y >= 16 and Z >= 4 (got {shape})")
    coords = _grid(shape)
    ndim = len(shape)
    body = _blob(coords, np.zeros(ndim), np.array([0.9, 0.8, 1.3][:ndim]), rng, wobble=0.05)
    organ_center = rng.uniform(-0.2, 0.2, ndim)
    organ_radii = rng.uniform(0.55, 0.7, ndim)  # a large organ: the lesion is a small part of it, as in a brain
    if ndim == 3:
        organ_radii[2] = rng.uniform(0.5, 0.7)
    organ = _blob(coords, organ_center, organ_radii, rng, wobble=0.15) & body
    lesions = np.zeros(shape, dtype=bool)
    voxel = np.array([2.0 / n for n in shape])  # one voxel in the [-1, 1] coordinates
    for _ in range(int(rng.integers(1, 3))):
        direction = rng.normal(size=ndim)
        direction /= np.linalg.norm(direction) + 1e-8
        center = organ_center + direction * organ_radii * rng.uniform(0.0, 0.4)
        radii = voxel * rng.uniform(6.5, 8.5, ndim)  # 13-17 voxels across
        if ndim == 3:
            radii[2] = voxel[2] * rng.uniform(2.5, 3.5)  # 5-7 slices
        lesions |= _blob(coords, center, radii, rng, wobble=0.2)
    lesions &= organ
    if not lesions.any():  # tiny shapes: force one lesion voxel at the organ's centre
        index = tuple(int(round((m + 1) / 2 * (n - 1))) for m, n in zip(organ_center, shape))
        lesions[index] = True
        organ[index] = True
    labels = np.zeros(shape, dtype=np.uint8)
    labels[organ] = 1
    labels[lesions] = 2

    fine = _smooth_noise(rng, shape, sigma=1.5)
    slow = _smooth_noise(rng, shape, sigma=4.0)
    image = np.zeros(shape, dtype=np.float32)
    image[body] = 150.0
    image[organ] = 260.0
    image += body.astype(np.float32) * (_FINE * fine + _SLOW * slow)
    if (organ & ~lesions).any():  # the lesion gets the organ's mean intensity, wherever it lies
        image[lesions] += image[organ & ~lesions].mean() - image[lesions].mean()
    image += lesions * float(rng.uniform(*_GRATING_AMPLITUDE)) * _grating(shape, rng)
    bias = 1.0 + 0.15 * sum(c * rng.uniform(-1, 1) for c in coords)  # slow linear bias field
    image *= np.asarray(bias, dtype=np.float32)
    sigma = _NOISE
    real = image + sigma * rng.standard_normal(shape).astype(np.float32)
    imaginary = sigma * rng.standard_normal(shape).astype(np.float32)
    image = np.sqrt(real**2 + imaginary**2).astype(np.float32)  # Rician magnitude noise
    return image, labels


def _affine(ndim: int, rng: np.random.Generator) -> np.ndarray:
    """A rotated, anisotropic voxel-to-RAS affine (0.8 x 0.8 x 2.5 mm in 3D, 0.7 x 0.7 mm in 2D)."""
    theta = np.deg2rad(rng.uniform(8.0, 20.0))
    rotation = np.array([[np.cos(theta), -np.sin(theta), 0.0], [np.sin(theta), np.cos(theta), 0.0], [0.0, 0.0, 1.0]])
    zooms = np.array([0.8, 0.8, 2.5] if ndim == 3 else [0.7, 0.7, 1.0])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag(zooms)
    affine[:3, 3] = rng.uniform(-60.0, 60.0, 3).round(2)
    return affine


def make_phantom_dataset(
    out_dir: Path,
    *,
    n_cases: int = 6,
    ndim: int = 3,
    shape: Sequence[int] = (64, 64, 16),
    seed: int = 0,
    image_dtype: Literal["mixed", "float32", "int16", "int16_raw"] = "mixed",
) -> tuple[Path, Path]:
    """Write a small phantom dataset: ``out_dir/images/phantom_NNN.nii.gz`` and ``out_dir/masks/phantom_NNN.nii.gz``.

    Args:
        out_dir: folder to create (existing phantom files are overwritten).
        n_cases: number of cases.
        ndim: 3 for volumes ``(X, Y, Z)``, 2 for single images ``(X, Y)`` (``shape[:2]`` is used).
        shape: spatial shape.
        seed: seeds ``np.random.default_rng``; case ``i`` draws from its own child generator, so the first cases do
            not change when ``n_cases`` grows.
        image_dtype: ``"float32"``, ``"int16"`` (``scl_slope`` 0.25, ``scl_inter`` -100), ``"int16_raw"`` (int16
            without scaling, file units = stored values, as CT volumes in HU are often stored) or ``"mixed"`` (even
            cases float32, odd cases int16).

    Returns:
        ``(images_dir, masks_dir)``.

    Raises:
        ConfigError: ``n_cases < 1``, ``ndim`` not 2 or 3, a bad shape or dtype.

    Example:
        >>> images, masks = make_phantom_dataset(Path("demo"), n_cases=2)  # doctest: +SKIP
    """
    import nibabel as nib

    if n_cases < 1:
        raise ConfigError(f"phantom: n_cases must be >= 1 (got {n_cases})")
    if ndim not in (2, 3):
        raise ConfigError(f"phantom: ndim must be 2 or 3 (got {ndim})")
    if image_dtype not in ("mixed", "float32", "int16", "int16_raw"):
        raise ConfigError(f"phantom: image_dtype must be mixed, float32, int16 or int16_raw (got {image_dtype!r})")
    shape = tuple(int(n) for n in shape)[:ndim]
    if len(shape) != ndim:
        raise ConfigError(f"phantom: shape needs {ndim} axes for ndim={ndim} (got {shape})")
    out_dir = Path(out_dir)
    images_dir, masks_dir = out_dir / "images", out_dir / "masks"
    images_dir.mkdir(parents=True, exist_ok=True)
    masks_dir.mkdir(parents=True, exist_ok=True)
    for index, child in enumerate(np.random.SeedSequence(seed).spawn(n_cases)):
        rng = np.random.default_rng(child)
        image, labels = make_phantom(shape, rng=rng)
        affine = _affine(ndim, rng)
        name = f"phantom_{index:03d}.nii.gz"
        as_int = image_dtype == "int16" or (image_dtype == "mixed" and index % 2 == 1)
        if image_dtype == "int16_raw":
            nifti = nib.Nifti1Image(np.clip(np.rint(image), -32768, 32767).astype(np.int16), affine)
        elif as_int:
            stored = np.clip(np.rint((image - _INTERCEPT) / _SLOPE), -32768, 32767).astype(np.int16)
            nifti = nib.Nifti1Image(stored, affine)
            nifti.header.set_slope_inter(_SLOPE, _INTERCEPT)
        else:
            nifti = nib.Nifti1Image(image, affine)
        nifti.header.set_xyzt_units("mm")
        nifti.header["descrip"] = b"umed synthetic phantom"
        nifti.set_qform(affine, code=1)
        nifti.set_sform(affine, code=1)
        mask = nib.Nifti1Image(labels, affine)
        mask.header.set_xyzt_units("mm")
        mask.set_qform(affine, code=1)
        mask.set_sform(affine, code=1)
        nib.save(nifti, images_dir / name)
        nib.save(mask, masks_dir / name)
    return images_dir, masks_dir
