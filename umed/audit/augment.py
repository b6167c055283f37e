"""Training augmentation defenses: nnU-Net v2 (2.8.1)'s, reimplemented with torch (the ``augment`` defense of the
audit), and an intensity-only augmentation (:func:`intensity_augment`, the ``intensity`` defense).

``nnUNetTrainer.get_training_transforms`` (batchgeneratorsv2) applies, per sample and in this order:

=====================  =========  ==================================================================================
transform              p          settings
=====================  =========  ==================================================================================
rotation               0.2        2D: +-180 deg (+-15 deg when the patch's aspect ratio exceeds 1.5); 3D: +-30 deg
                                  about each axis
scaling                0.2        0.7..1.4, the same for every axis (no elastic deformation)
Gaussian noise         0.1        std drawn from U(0, 0.1) (batchgeneratorsv2 passes the ``noise_variance`` draw to
                                  ``np.random.normal`` as the scale), on z-scored data
Gaussian blur          0.2        sigma 0.5..1 drawn per axis, then per channel p 0.5; reflect padding, kernel +-3 sigma
brightness             0.15       multiply by BGContrast(0.75, 1.25)
contrast               0.15       BGContrast(0.75, 1.25) about the mean, range preserved
low resolution         0.25       zoom 0.5..1 (same on every axis), per channel p 0.5: nearest-exact down,
                                  (bi/tri)linear up
gamma, inverted        0.1        BGContrast(0.7, 1.5) on the inverted image, statistics retained
gamma                  0.3        BGContrast(0.7, 1.5), statistics retained
mirroring              1          each axis p 0.5
=====================  =========  ==================================================================================

BGContrast(a, b) draws U(a, 1) with probability 0.5, else U(1, b). Labels follow the spatial transforms: mirrored,
and rotated/scaled by linear interpolation thresholded at 0.5 (nnU-Net's ``mode_seg='bilinear'`` for one label).

Deviations (stated because they may matter):

- Intensities: nnU-Net works on z-scored images; umed's victims see images in ``[0, 1]`` (percentile mapping). Each
  sample is z-scored by its own mean and std before the intensity transforms and mapped back after them, so noise,
  brightness, contrast and gamma act exactly as on z-scored data, but with the patch's statistics instead of the
  case's foreground statistics.
- Spatial: nnU-Net crops a larger patch, rotates/scales it and crops the centre, so rotated corners hold real image;
  here the training patch itself is transformed and the corners are filled by reflection.
- Rotation in 3D is composed as Rz Ry Rx with independent angles (batchgeneratorsv2 draws the same three angles).
- The trainer's other settings are not the audit's: it trains with SGD lr 1e-2 (poly) for 1000 x 250 iterations with
  33% foreground oversampling and deep supervision; the audit's victims use Adam, ``epochs`` passes and 50%
  structure-centred patches, without deep supervision.

Randomness comes only from the ``torch.Generator`` passed in.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["intensity_augment", "nnunet_augment"]


def _u(generator: torch.Generator, low: float, high: float) -> float:
    import torch

    return float(low + (high - low) * torch.rand((), generator=generator, dtype=torch.float64))


def _bg_contrast(generator: torch.Generator, low: float, high: float) -> float:
    """batchgeneratorsv2's BGContrast: below 1 half of the time, above 1 otherwise."""
    if _u(generator, 0, 1) < 0.5 and low < 1:
        return _u(generator, low, 1.0)
    return _u(generator, max(low, 1.0), high)


def _rotation(ndim: int, angles: list[float]) -> torch.Tensor:
    import torch

    if ndim == 2:
        c, s = math.cos(angles[0]), math.sin(angles[0])
        return torch.tensor([[c, -s], [s, c]], dtype=torch.float32)
    matrix = torch.eye(3)
    for axis, angle in enumerate(angles):
        c, s = math.cos(angle), math.sin(angle)
        a, b = [i for i in range(3) if i != axis]
        r = torch.eye(3)
        r[a, a], r[a, b], r[b, a], r[b, b] = c, -s, s, c
        matrix = r @ matrix
    return matrix


def _spatial(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotation p 0.2 and scaling p 0.2 of one sample ``(1, 1, *spatial)``."""
    import torch
    import torch.nn.functional as F

    ndim = x.ndim - 2
    rotate, scale = _u(generator, 0, 1) < 0.2, _u(generator, 0, 1) < 0.2
    if not (rotate or scale):
        return x, y
    shape = x.shape[2:]
    if ndim == 2:
        limit = math.radians(15 if max(shape) / min(shape) > 1.5 else 180)
        angles = [_u(generator, -limit, limit) if rotate else 0.0]
    else:
        limit = math.radians(30)
        angles = [_u(generator, -limit, limit) if rotate else 0.0 for _ in range(3)]
    zoom = _u(generator, 0.7, 1.4) if scale else 1.0
    theta = torch.zeros(ndim, ndim + 1)
    theta[:, :ndim] = _rotation(ndim, angles) / zoom  # zoom > 1 enlarges the content (samples a smaller region)
    grid = F.affine_grid(theta[None], list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    moved = F.grid_sample(y.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return x, (moved >= 0.5).to(y.dtype)


def _blur(x: torch.Tensor, sigmas: list[float]) -> torch.Tensor:
    """Separable Gaussian blur of ``(1, 1, *spatial)``, one sigma per axis, reflect padding, kernel +-3 sigma."""
    import torch
    import torch.nn.functional as F

    ndim = x.ndim - 2
    conv = (F.conv1d, F.conv2d, F.conv3d)[ndim - 1]
    for axis, sigma in enumerate(sigmas):
        radius = min(max(1, int(math.ceil(3 * sigma))), x.shape[2 + axis] - 1)
        coords = torch.arange(-radius, radius + 1, dtype=x.dtype)
        kernel = torch.exp(-0.5 * (coords / sigma) ** 2)
        shape = [1, 1] + [1] * ndim
        shape[2 + axis] = kernel.numel()
        pad = [0, 0] * ndim
        pad[2 * (ndim - 1 - axis)] = pad[2 * (ndim - 1 - axis) + 1] = radius
        x = conv(F.pad(x, pad, mode="reflect"), (kernel / kernel.sum()).reshape(shape))
    return x


def _gamma(z: torch.Tensor, gamma: float, invert: bool) -> torch.Tensor:
    """batchgeneratorsv2's GammaTransform with statistics retained (``p_retain_stats`` 1)."""
    v = -z if invert else z
    mean, std = v.mean(), v.std()
    low = v.min()
    span = (v.max() - low).clamp(min=1e-7)
    v = ((v - low) / span).pow(gamma) * span + low
    v = (v - v.mean()) * (std / v.std().clamp(min=1e-7)) + mean
    return -v if invert else v


def _intensity(z: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Noise, blur, brightness, contrast, low resolution and the two gammas on one z-scored sample."""
    import torch
    import torch.nn.functional as F

    ndim = z.ndim - 2
    if _u(generator, 0, 1) < 0.1:
        z = z + _u(generator, 0.0, 0.1) * torch.randn(z.shape, generator=generator, dtype=z.dtype)
    if _u(generator, 0, 1) < 0.2:
        sigmas = [_u(generator, 0.5, 1.0) for _ in range(ndim)]
        if _u(generator, 0, 1) < 0.5:
            z = _blur(z, sigmas)
    if _u(generator, 0, 1) < 0.15:
        z = z * _bg_contrast(generator, 0.75, 1.25)
    if _u(generator, 0, 1) < 0.15:
        factor = _bg_contrast(generator, 0.75, 1.25)
        low, high, mean = z.min(), z.max(), z.mean()
        z = ((z - mean) * factor + mean).clamp(low, high)
    if _u(generator, 0, 1) < 0.25:
        zoom = _u(generator, 0.5, 1.0)
        if _u(generator, 0, 1) < 0.5:
            size = list(z.shape[2:])
            small = [max(1, round(n * zoom)) for n in size]
            mode = "bilinear" if ndim == 2 else "trilinear"
            z = F.interpolate(
                F.interpolate(z, size=small, mode="nearest-exact"), size=size, mode=mode, align_corners=False
            )
    if _u(generator, 0, 1) < 0.1:
        z = _gamma(z, _bg_contrast(generator, 0.7, 1.5), invert=True)
    if _u(generator, 0, 1) < 0.3:
        z = _gamma(z, _bg_contrast(generator, 0.7, 1.5), invert=False)
    return z


def nnunet_augment(
    x: torch.Tensor, y: torch.Tensor, *, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """nnU-Net v2 2.8.1's training augmentation (see the module docstring), drawn per sample.

    Args:
        x: images ``(B, 1, *spatial)`` float32 in umed's normalised units (2 or 3 spatial axes).
        y: labels ``(B, 1, *spatial)``, binary (any numeric dtype).
        generator: the only source of randomness.

    Returns:
        ``(x_aug, y_aug)`` of the same shapes and dtypes (new tensors; the inputs are not changed).
    """
    import torch

    ndim = x.ndim - 2
    xs, ys = [], []
    for i in range(x.shape[0]):
        xi, yi = _spatial(x[i : i + 1].clone(), y[i : i + 1].clone(), generator)
        mean, std = xi.mean(), xi.std().clamp(min=1e-6)
        xi = _intensity((xi - mean) / std, generator) * std + mean
        for axis in range(ndim):
            if _u(generator, 0, 1) < 0.5:
                xi, yi = torch.flip(xi, dims=(2 + axis,)), torch.flip(yi, dims=(2 + axis,))
        xs.append(xi)
        ys.append(yi)
    return torch.cat(xs).to(x.dtype), torch.cat(ys).to(y.dtype)


def intensity_augment(
    x: torch.Tensor,
    *,
    generator: torch.Generator,
    gamma: tuple[float, float] = (0.7, 1.5),
    scale: float = 0.1,
    noise: float = 0.03,
    p: float = 0.5,
) -> torch.Tensor:
    """Intensity-only augmentation, drawn per sample: gamma on the sample's min-max range, multiplicative scale,
    additive Gaussian noise (normalised units), each with probability ``p``.

    Args:
        x: images ``(B, 1, *spatial)`` float32.
        generator: the only source of randomness.

    Returns:
        A new tensor of the same shape and dtype.
    """
    import torch

    out = []
    for i in range(x.shape[0]):
        xi = x[i : i + 1].clone()
        if _uniform(generator, 0, 1) < p:
            lo, hi = xi.min(), xi.max()
            if float(hi - lo) > 0:
                xi = ((xi - lo) / (hi - lo)).clamp(0, 1).pow(_uniform(generator, *gamma)) * (hi - lo) + lo
        if _uniform(generator, 0, 1) < p:
            xi = xi * (1 + _uniform(generator, -scale, scale))
        if _uniform(generator, 0, 1) < p:
            xi = xi + noise * torch.randn(xi.shape, generator=generator, dtype=xi.dtype)
        out.append(xi)
    return torch.cat(out).to(x.dtype)


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    import torch

    return float(low + (high - low) * torch.rand((), generator=generator))
