"""Expectation over the attacker's transformations (EOT) for the generator-based protectors.

When a protector trains with ``eot`` set, every generator step and every surrogate step sees the protected crops
through one transform drawn at random from ``["none", *eot]``: the generators must then find a perturbation that
still lowers the surrogate's loss after the data user's ordinary processing, and the surrogate learns on what such
a user would train on (cf. REM, arXiv 2203.14533, and FUSE's random spectral masking, arXiv 2606.26719). Every
transform is differentiable in the image (the median passes the gradient to the median voxel).

=============  ====================================================================================================
name           transform of a batch ``(B, 1, H, W)`` (one draw per batch)
=============  ====================================================================================================
``gaussian``   Gaussian blur, sigma ~ U(0.5, 1.5) voxels (replicate padding)
``median``     3x3 median filter (reflect padding)
``downsample`` 2x2 average pooling and bilinear interpolation back (training on half-size slices)
``lowres``     nearest-neighbour zoom by U(0.5, 1) and bilinear back (nnU-Net's low-resolution simulation)
``augment``    :func:`umed.audit.augment.nnunet_augment` (nnU-Net 2.8.1's list; labels follow)
``spectral``   a random annulus of spatial frequencies set to zero (centre radius ~ U(0.05, 0.45) cycles/voxel,
               width ~ U(0.05, 0.2))
=============  ====================================================================================================

Randomness comes only from the ``torch.Generator`` passed in.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from umed.errors import ConfigError

__all__ = ["EOT_NAMES", "AttackerView", "check_eot", "draw_transform"]

Transform = Callable[[torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return float(low + (high - low) * torch.rand((), generator=generator))


def _gaussian(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    sigma = _uniform(generator, 0.5, 1.5)
    radius = max(1, math.ceil(3 * sigma))
    coords = torch.arange(-radius, radius + 1, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (coords / sigma) ** 2)
    kernel = kernel / kernel.sum()
    out = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    out = F.conv2d(out, kernel.reshape(1, 1, 1, -1))
    out = F.conv2d(out, kernel.reshape(1, 1, -1, 1))
    return out, y


def _median(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    b, c, h, w = x.shape
    patches = F.unfold(F.pad(x, (1, 1, 1, 1), mode="reflect"), kernel_size=3)  # (B, 9, H*W)
    return patches.median(dim=1).values.reshape(b, c, h, w), y


def _downsample(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    small = F.avg_pool2d(x, 2, ceil_mode=True)
    return F.interpolate(small, size=tuple(x.shape[2:]), mode="bilinear", align_corners=False), y


def _lowres(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    zoom = _uniform(generator, 0.5, 1.0)
    size = tuple(x.shape[2:])
    small = [max(1, round(n * zoom)) for n in size]
    return F.interpolate(
        F.interpolate(x, size=small, mode="nearest"), size=size, mode="bilinear", align_corners=False
    ), y


def _augment(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    from umed.audit.augment import nnunet_augment

    return nnunet_augment(x, y, generator=generator)


def _spectral(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    centre = _uniform(generator, 0.05, 0.45)
    width = _uniform(generator, 0.05, 0.2)
    fy = torch.fft.fftfreq(x.shape[-2], dtype=x.dtype)[:, None]
    fx = torch.fft.rfftfreq(x.shape[-1], dtype=x.dtype)[None, :]
    radius = torch.sqrt(fy**2 + fx**2)
    keep = ((radius - centre).abs() > width / 2).to(x.dtype)
    return torch.fft.irfft2(torch.fft.rfft2(x) * keep, s=tuple(x.shape[-2:])), y


_TRANSFORMS: dict[str, Transform] = {
    "gaussian": _gaussian,
    "median": _median,
    "downsample": _downsample,
    "lowres": _lowres,
    "augment": _augment,
    "spectral": _spectral,
}
EOT_NAMES = tuple(_TRANSFORMS)
"""The transforms ``eot`` may list."""


def check_eot(method: str, names: object) -> list[str]:
    """The ``eot`` setting as a list of known transform names (empty = EOT off).

    Raises:
        ConfigError: not a list of strings, or an unknown or repeated name.
    """
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise ConfigError(
            f"method '{method}': setting 'eot' (expected a list of names from {list(EOT_NAMES)}, got {names!r})"
        )
    keys = [n.strip().lower() for n in names]
    unknown = sorted(set(keys) - set(EOT_NAMES))
    if unknown or len(set(keys)) != len(keys):
        raise ConfigError(
            f"method '{method}': setting 'eot' (unknown or repeated transform(s) {unknown or keys}; expected distinct "
            f"names from {list(EOT_NAMES)})"
        )
    return keys


def _finite_gradient(transform: Transform) -> Transform:
    """``transform`` whose gradient with respect to its input has non-finite entries set to 0: a gamma ``v ** g``
    with ``g < 1`` (in the augmentation) has an infinite derivative at ``v = 0``, which would otherwise turn the
    generators' weights into NaN."""

    def run(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        if x.requires_grad:
            x = x.clone()
            x.register_hook(lambda grad: torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0))
        return transform(x, y, generator)

    return run


def draw_transform(names: list[str], generator: torch.Generator) -> tuple[str, Transform | None]:
    """One transform drawn uniformly from ``["none", *names]``; ``None`` for ``"none"`` (the plain attacker)."""
    choice = int(torch.randint(len(names) + 1, (), generator=generator))
    if choice == 0:
        return "none", None
    return names[choice - 1], _finite_gradient(_TRANSFORMS[names[choice - 1]])


class AttackerView:
    """What the attacker's pipeline makes of a training batch: ``(x, y)`` through one transform of ``names`` per call,
    drawn with ``"none"`` from a generator seeded by ``seed`` (identity, and no generator, when ``names`` is empty).

    ``draws`` counts how often each transform was drawn (the fit log reports it).

    Example:
        >>> view = AttackerView([], seed=0)
        >>> x = torch.zeros(1, 1, 8, 8)
        >>> view(x, x)[0] is x, view.draws
        (True, {})
    """

    def __init__(self, names: list[str], seed: int) -> None:
        self.names = list(names)
        self.generator = torch.Generator().manual_seed(seed) if self.names else None
        self.draws: dict[str, int] = {}

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.generator is None:
            return x, y
        name, transform = draw_transform(self.names, self.generator)
        self.draws[name] = self.draws.get(name, 0) + 1
        return (x, y) if transform is None else transform(x, y, self.generator)
