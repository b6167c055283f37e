"""A suspect model's answers on probe arrays, in memory: its structure probability per voxel.

For the audit and the benchmarks, where the suspect is a torch network at hand. Files written by someone's own
pipeline are read by :mod:`umed.verify.answers` instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from torch import nn

__all__ = ["structure_probability"]


def structure_probability(
    model: nn.Module,
    volume: np.ndarray,
    *,
    slices: Sequence[int] | None = None,
    batch_size: int = 16,
    window: tuple[int, ...] | None = None,
) -> np.ndarray:
    """``1 - P(background)`` of ``model`` (2 or more output channels, softmax) on ``volume``, float32, its shape.

    Args:
        model: a 2D network (``window`` None or of length 2: slice by slice along the last axis) or a 3D network
            (``window`` of length 3: MONAI sliding-window inference on the whole volume).
        volume: ``(H, W)`` or ``(X, Y, Z)`` in the model's input units.
        slices: for a 2D network, only these slices (the others stay 0).
        batch_size: slices per forward pass.
        window: the patch size the model was trained on, for sliding-window inference (None: whole slices).
    """
    import torch

    squeeze = volume.ndim == 2
    data = np.asarray(volume, np.float32)
    data = data[..., None] if squeeze else data
    out = np.zeros(data.shape, np.float32)
    model.eval()
    with torch.no_grad():
        if window is not None and len(window) == 3:
            from monai.inferers import sliding_window_inference

            logits = sliding_window_inference(
                torch.from_numpy(np.ascontiguousarray(data))[None, None], window, 2, model, overlap=0.25
            )
            assert isinstance(logits, torch.Tensor)
            out[:] = 1 - torch.softmax(logits, dim=1)[0, 0].numpy()
            return out[..., 0] if squeeze else out
        chosen = list(range(data.shape[-1])) if slices is None else sorted(set(int(z) for z in slices))
        for start in range(0, len(chosen), batch_size):
            zs = chosen[start : start + batch_size]
            xb = torch.from_numpy(np.ascontiguousarray(np.moveaxis(data[..., zs], -1, 0)))[:, None]
            if window is not None:
                from monai.inferers import sliding_window_inference

                logits = sliding_window_inference(xb, window, 4, model, overlap=0.25)
                assert isinstance(logits, torch.Tensor)
            else:
                logits = model(xb)
            probability = 1 - torch.softmax(logits, dim=1)[:, 0].numpy()
            out[..., zs] = np.moveaxis(probability, 0, -1)
    return out[..., 0] if squeeze else out
