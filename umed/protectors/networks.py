"""Networks of the UMed generators: central difference convolutions and small encoder-decoders.

Central difference convolution (CDC; Yu et al., "Searching Central Difference Convolutional Networks for Face
Anti-Spoofing", CVPR 2020, reference code ZitongYu/CDCN) mixes a plain convolution with a convolution of local
differences ``w * (neighbour - centre)``::

    out = conv(x, W) - theta * conv1x1(x, sum of W over its spatial taps)

``theta = 0`` is a plain convolution; the reference default is 0.7. UMed (Lin et al., arXiv 2403.14250, 2024) builds
its contour generator from CDC layers because differences respond to edges, where the contour band lies.

The CDC layers fold the difference term into the kernel (``W`` with ``theta * sum(W)`` taken off its centre tap),
which is the same linear map for every stride, dilation and padding and costs one convolution. With ``theta = 0``
the layer runs exactly ``nn.Conv2d``/``nn.Conv3d``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CDConv2d", "CDConv3d", "CDCGenerator", "PlainGenerator"]


def _central_difference_weight(weight: torch.Tensor, theta: float, spatial_dims: int) -> torch.Tensor:
    """``W`` with ``theta * sum_spatial(W)`` subtracted at the centre tap (the kernel form of CDC)."""
    if theta == 0:
        return weight
    kernel = weight.shape[-spatial_dims:]
    if any(size % 2 == 0 for size in kernel):
        raise ValueError(f"central difference convolution needs odd kernel sizes (got {tuple(kernel)})")
    dims = tuple(range(-spatial_dims, 0))
    centre = (Ellipsis,) + tuple(size // 2 for size in kernel)
    out = weight.clone()
    out[centre] = weight[centre] - theta * weight.sum(dim=dims)
    return out


class _CentralDifference:
    """The central difference part shared by :class:`CDConv2d` and :class:`CDConv3d` (placed before the torch
    convolution in their bases, so ``forward`` replaces the plain one; it adds no parameter)."""

    SPATIAL_DIMS: int
    weight: torch.Tensor
    bias: torch.Tensor | None

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, *, theta: float = 0.7, **kwargs: Any
    ) -> None:
        kwargs.setdefault("padding", kernel_size // 2 if isinstance(kernel_size, int) else 1)
        kwargs.setdefault("bias", False)
        super().__init__(in_channels, out_channels, kernel_size, **kwargs)  # type: ignore[call-arg]  # the conv's
        if not 0.0 <= float(theta) <= 1.0:
            raise ValueError(f"theta: expected a value in [0, 1] (got {theta})")
        self.theta = float(theta)
        _central_difference_weight(self.weight.detach(), self.theta, self.SPATIAL_DIMS)  # fail early on even kernels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = _central_difference_weight(self.weight, self.theta, self.SPATIAL_DIMS)
        return self._conv_forward(x, weight, self.bias)  # type: ignore[attr-defined]  # nn.Conv2d/3d's

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, theta={self.theta}"  # type: ignore[misc]  # nn.Conv2d/3d's


class CDConv2d(_CentralDifference, nn.Conv2d):
    """2D central difference convolution, ``out = conv(x, W) - theta * conv1x1(x, sum_{ij} W)``.

    Takes every argument of :class:`torch.nn.Conv2d` plus ``theta``; the state dict is the same as ``nn.Conv2d``'s.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: odd kernel size (default 3).
        theta: weight of the central difference term in [0, 1]; 0 is a plain convolution (default 0.7).
        **kwargs: ``stride``, ``padding`` (default 1), ``dilation``, ``groups``, ``bias`` (default False, as the
            reference code), ``padding_mode``.

    Shape:
        - Input: ``(B, C_in, H, W)``.
        - Output: ``(B, C_out, H', W')`` as ``nn.Conv2d``.

    Example:
        >>> layer = CDConv2d(1, 4, theta=0.7)
        >>> layer(torch.zeros(2, 1, 9, 9)).shape
        torch.Size([2, 4, 9, 9])
    """

    SPATIAL_DIMS = 2


class CDConv3d(_CentralDifference, nn.Conv3d):
    """3D central difference convolution: as :class:`CDConv2d`, ``W`` summed over its three spatial axes.

    Shape:
        - Input: ``(B, C_in, D, H, W)``.
        - Output: ``(B, C_out, D', H', W')`` as ``nn.Conv3d``.

    Example:
        >>> CDConv3d(1, 2)(torch.zeros(1, 1, 5, 5, 5)).shape
        torch.Size([1, 2, 5, 5, 5])
    """

    SPATIAL_DIMS = 3


ConvFactory = Callable[[int, int], nn.Module]


def _norm(channels: int) -> nn.GroupNorm:
    # GroupNorm: per-sample statistics, so a slice's output never depends on the rest of its batch
    return nn.GroupNorm(min(8, channels), channels)


class _Block(nn.Sequential):
    def __init__(self, conv: ConvFactory, in_channels: int, out_channels: int) -> None:
        super().__init__(
            conv(in_channels, out_channels),
            _norm(out_channels),
            nn.LeakyReLU(0.2, inplace=True),
            conv(out_channels, out_channels),
            _norm(out_channels),
            nn.LeakyReLU(0.2, inplace=True),
        )


class _EncoderDecoder(nn.Module):
    """U-Net-like encoder-decoder (skip connections, max-pool down, bilinear up), any input size."""

    def __init__(self, conv: ConvFactory, in_channels: int, out_channels: int, base_channels: int, depth: int) -> None:
        super().__init__()
        if in_channels < 1 or out_channels < 1 or base_channels < 1 or depth < 1:
            raise ValueError(
                f"generator: channels and depth must be >= 1 (got in={in_channels}, out={out_channels}, "
                f"base={base_channels}, depth={depth})"
            )
        widths = [base_channels * 2**level for level in range(depth + 1)]
        self.depth = depth
        self.encoders = nn.ModuleList([_Block(conv, in_channels, widths[0])])
        self.encoders.extend(_Block(conv, widths[level - 1], widths[level]) for level in range(1, depth + 1))
        self.decoders = nn.ModuleList(
            _Block(conv, widths[level + 1] + widths[level], widths[level]) for level in reversed(range(depth))
        )
        self.head = nn.Conv2d(widths[0], out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        multiple = 2**self.depth
        pad_h, pad_w = (-height) % multiple, (-width) % multiple
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        skips = []
        for level, encoder in enumerate(self.encoders):
            x = encoder(x if level == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for decoder in self.decoders:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = decoder(torch.cat([x, skip], dim=1))
        return self.head(x)[..., :height, :width]


class CDCGenerator(_EncoderDecoder):
    """UMed's contour perturbator G_c: a small U-Net of central difference convolutions (2D).

    Output is unbounded logits; UMed maps them with ``eps_c * tanh(.)``. Fully convolutional: inputs of any
    ``H, W`` are padded (replicate) to a multiple of ``2**depth`` and the output is cropped back.

    Args:
        in_channels: 1 (image) or 2 (image and structure mask).
        out_channels: output channels (1).
        base_channels: width of the first level; level ``l`` has ``base_channels * 2**l``.
        depth: number of 2x down-samplings.
        theta: CDC theta of every 3x3 layer (0 gives a plain U-Net).

    Shape:
        - Input: ``(B, in_channels, H, W)`` float32.
        - Output: ``(B, out_channels, H, W)`` float32, unbounded.

    Example:
        >>> net = CDCGenerator(in_channels=2, base_channels=8, depth=2)
        >>> net(torch.zeros(1, 2, 30, 41)).shape
        torch.Size([1, 1, 30, 41])
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        *,
        base_channels: int = 16,
        depth: int = 3,
        theta: float = 0.7,
    ) -> None:
        if not 0.0 <= float(theta) <= 1.0:
            raise ValueError(f"theta: expected a value in [0, 1] (got {theta})")

        def conv(cin: int, cout: int) -> nn.Module:
            return CDConv2d(cin, cout, 3, theta=theta)

        super().__init__(conv, in_channels, out_channels, base_channels, depth)


class PlainGenerator(_EncoderDecoder):
    """UMed's texture perturbator G_t: the same encoder-decoder with plain 3x3 convolutions (2D).

    Args:
        in_channels: 1 (image) or 2 (image and structure mask).
        out_channels: output channels (1).
        base_channels: width of the first level.
        depth: number of 2x down-samplings.

    Shape:
        - Input: ``(B, in_channels, H, W)`` float32.
        - Output: ``(B, out_channels, H, W)`` float32, unbounded.

    Example:
        >>> PlainGenerator(base_channels=8, depth=2)(torch.zeros(1, 1, 17, 17)).shape
        torch.Size([1, 1, 17, 17])
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, *, base_channels: int = 16, depth: int = 3) -> None:
        def conv(cin: int, cout: int) -> nn.Module:
            return nn.Conv2d(cin, cout, 3, padding=1, bias=False)

        super().__init__(conv, in_channels, out_channels, base_channels, depth)
