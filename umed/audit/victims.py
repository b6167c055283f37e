"""Victim segmentation networks for the audit: the registry of small MONAI networks a data user would train.

A *victim* is what a data user would train on the protected dataset. The audit trains each victim twice with the same
seed and settings, on protected and on clean training data (:mod:`umed.audit.training`), and compares their Dice on
clean test images that were never used for training. Victims are small MONAI networks with 2 output classes
(background, structure) so that a default audit of a few BraTS cases runs on a laptop CPU.

Example:
    >>> VICTIM_NAMES
    ('unet', 'basicunet', 'segresnet', 'attentionunet', 'unet3d')
    >>> victim_divisor("basicunet"), victim_spatial_dims("unet3d")
    (16, 3)
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from umed.errors import ConfigError
from umed.registry import Registry

if TYPE_CHECKING:
    from torch import nn

__all__ = ["VICTIMS", "VICTIM_NAMES", "build_victim", "victim_divisor", "victim_spatial_dims"]


@dataclass(frozen=True)
class _Victim:
    """A victim's registry entry: total downsampling (every spatial size must divide by it), spatial axes, builder."""

    divisor: int
    spatial_dims: int | None  # None: 2 or 3 as asked (slice victims), else fixed
    build: Callable[[int, int, int], nn.Module]


def _unet(spatial_dims: int, in_channels: int, out_channels: int) -> nn.Module:
    from monai.networks.nets import UNet

    return UNet(spatial_dims, in_channels, out_channels, channels=(16, 32, 64, 128), strides=(2, 2, 2), num_res_units=2)


def _basicunet(spatial_dims: int, in_channels: int, out_channels: int) -> nn.Module:
    from monai.networks.nets import BasicUNet

    with contextlib.redirect_stdout(io.StringIO()):  # BasicUNet prints its features
        return BasicUNet(spatial_dims, in_channels, out_channels, features=(16, 16, 32, 64, 128, 16))


def _segresnet(spatial_dims: int, in_channels: int, out_channels: int) -> nn.Module:
    from monai.networks.nets import SegResNet

    return SegResNet(spatial_dims, init_filters=16, in_channels=in_channels, out_channels=out_channels)


def _attentionunet(spatial_dims: int, in_channels: int, out_channels: int) -> nn.Module:
    from monai.networks.nets import AttentionUnet

    return AttentionUnet(spatial_dims, in_channels, out_channels, channels=(16, 32, 64, 128), strides=(2, 2, 2))


#: Every victim by name (the single list; :data:`VICTIM_NAMES` and the CLI help read it).
VICTIMS: Registry[_Victim] = Registry(
    "victim",
    {
        "unet": _Victim(8, None, _unet),
        "basicunet": _Victim(16, None, _basicunet),
        "segresnet": _Victim(8, None, _segresnet),
        "attentionunet": _Victim(8, None, _attentionunet),
        "unet3d": _Victim(8, 3, _unet),
    },
)

VICTIM_NAMES = VICTIMS.names()


def victim_divisor(name: str) -> int:
    """The factor every spatial size must be divisible by for victim ``name`` (its total downsampling).

    Raises:
        ConfigError: unknown victim (the message lists the valid ones).
    """
    return VICTIMS.get(name).divisor


def victim_spatial_dims(name: str) -> int:
    """2 for the slice victims, 3 for ``unet3d``."""
    return VICTIMS.get(name).spatial_dims or 2


def build_victim(name: str, *, spatial_dims: int = 2, in_channels: int = 1, out_channels: int = 2) -> nn.Module:
    """A freshly initialised victim network (uses torch's global RNG: wrap in ``fork_rng`` to seed it).

    =================  =====================================================================================
    name               network
    =================  =====================================================================================
    ``unet``           ``monai.networks.nets.UNet`` channels (16, 32, 64, 128), strides (2, 2, 2), 2 res units
    ``basicunet``      ``BasicUNet`` features (16, 16, 32, 64, 128, 16)
    ``segresnet``      ``SegResNet`` init_filters 16
    ``attentionunet``  ``AttentionUnet`` channels (16, 32, 64, 128), strides (2, 2, 2)
    ``unet3d``         the ``unet`` above with ``spatial_dims=3`` (trained on 3D patches)
    =================  =====================================================================================

    Args:
        name: victim name (case-insensitive).
        spatial_dims: 2 or 3 (ignored for ``unet3d``, which is always 3).
        in_channels: image channels.
        out_channels: classes (2: background and structure).

    Returns:
        A ``torch.nn.Module`` mapping ``(B, in_channels, *spatial)`` to logits ``(B, out_channels, *spatial)``;
        every spatial size must be divisible by :func:`victim_divisor` and (for training, where the deepest instance
        norm needs more than one voxel) at least twice that.

    Raises:
        ConfigError: unknown name or ``spatial_dims`` not 2 or 3.
    """
    entry = VICTIMS.get(name)
    spatial_dims = entry.spatial_dims or spatial_dims
    if spatial_dims not in (2, 3):
        raise ConfigError(f"victim: spatial_dims must be 2 or 3 (got {spatial_dims})")
    return entry.build(spatial_dims, in_channels, out_channels)
