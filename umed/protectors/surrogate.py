"""The surrogate segmentation network every surrogate-based protector trains against, and its tensor helpers.

Conventions: tensors are ``(B, 1, H, W)`` float32 in umed's normalised intensity space (``data_range = 1``); the
global torch RNG is only touched inside :func:`seeded_torch`, which restores it.

Example:
    >>> import torch
    >>> model = make_surrogate(seed=0)
    >>> segment(model, torch.zeros(1, 1, 20, 30)).shape
    torch.Size([1, 2, 20, 30])
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "seeded_torch",
    "make_surrogate",
    "segmentation_loss",
    "segment",
    "to_tensor",
    "plain_state",
    "sub_state",
]

SURROGATE_CHANNELS = (16, 32, 64, 128)
SURROGATE_STRIDES = (2, 2, 2)
_SURROGATE_MULTIPLE = 8  # 2 ** len(SURROGATE_STRIDES)


@contextmanager
def seeded_torch(seed: int) -> Iterator[None]:
    """Run a block (network initialisation) with the global torch RNG seeded, then restore it.

    torch and MONAI initialise weights from the global RNG; forking keeps the caller's RNG state unchanged.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


def make_surrogate(*, seed: int = 0, in_channels: int = 1, num_classes: int = 2) -> nn.Module:
    """The surrogate segmentation network every protector trains against: a small MONAI 2D U-Net.

    ``monai.networks.nets.UNet(spatial_dims=2, channels=(16, 32, 64, 128), strides=(2, 2, 2), num_res_units=2)``,
    initialised from ``seed`` without changing the global RNG.

    Args:
        seed: initialisation seed.
        in_channels: input channels (1: the image).
        num_classes: output classes (2: background, structure).

    Shape:
        Input ``(B, in_channels, H, W)`` with ``H, W`` multiples of 8 (use :func:`segment` for any size); output
        ``(B, num_classes, H, W)`` logits.
    """
    from monai.networks.nets import UNet

    with seeded_torch(seed):
        return UNet(
            spatial_dims=2,
            in_channels=in_channels,
            out_channels=num_classes,
            channels=SURROGATE_CHANNELS,
            strides=SURROGATE_STRIDES,
            num_res_units=2,
        )


def segmentation_loss() -> nn.Module:
    """CE + Dice (MONAI ``DiceCELoss(to_onehot_y=True, softmax=True)``), per-sample Dice, mean over the batch.

    Shape:
        ``loss(logits (B, 2, H, W), labels (B, 1, H, W) in {0, 1}) -> scalar``.
    """
    from monai.losses import DiceCELoss

    return DiceCELoss(to_onehot_y=True, softmax=True)


def segment(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Run a surrogate on any ``H, W``: replicate-pad to a multiple of 8, crop the logits back.

    Shape:
        ``x (B, 1, H, W) -> logits (B, num_classes, H, W)``.
    """
    height, width = x.shape[-2:]
    pad_h, pad_w = (-height) % _SURROGATE_MULTIPLE, (-width) % _SURROGATE_MULTIPLE
    if pad_h or pad_w:
        x = torch.nn.functional.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    return model(x)[..., :height, :width]


def to_tensor(array: np.ndarray) -> torch.Tensor:
    """``(B, H, W)`` numpy to a ``(B, 1, H, W)`` float32 tensor (a copy)."""
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).unsqueeze(1)


def plain_state(module: nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    """A module's state as plain CPU tensors under ``prefix.`` (loadable with ``torch.load(weights_only=True)``)."""
    return {f"{prefix}.{key}": value.detach().cpu().clone() for key, value in module.state_dict().items()}


def sub_state(state: dict[str, Any], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of ``state`` under ``prefix.``, with the prefix removed."""
    head = f"{prefix}."
    return {key[len(head) :]: value for key, value in state.items() if key.startswith(head)}
