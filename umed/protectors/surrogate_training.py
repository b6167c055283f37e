"""Surrogate training on random crops, clean (TAP, SEP) or min-min on sample-wise noise (EM, SALM).

Example:
    >>> curve([1.0, 2.0, 3.0, 4.0], points=2)
    [1.5, 3.5]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from umed.protectors.base import ProgressCallback
from umed.protectors.crops import CropSampler
from umed.protectors.pgd import project
from umed.protectors.surrogate import segment, segmentation_loss, to_tensor

__all__ = ["NoiseUpdate", "fit_surrogate", "curve"]


NoiseUpdate = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def fit_surrogate(
    model: nn.Module,
    sampler: CropSampler,
    rng: np.random.Generator,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    noise: np.ndarray | None = None,
    noise_update: NoiseUpdate | None = None,
    view: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
    on_step: Callable[[int], None] | None = None,
    progress: ProgressCallback | None = None,
    description: str = "training surrogate",
) -> dict[str, Any]:
    """Train a surrogate on crops, clean or (min-min) on sample-wise noise updated between its steps.

    Each step draws a batch of crops. With ``noise`` (a ``(N, H, W)`` store of the training slices' current
    perturbations, padded like the sampler's arrays) and ``noise_update``, the crops' noise is first updated by
    ``noise_update(x, y, bound, delta) -> delta`` against the current surrogate and written back (the inner
    "min" of EM, Huang et al. 2021), then the surrogate takes one Adam step on ``x + delta``. Without them it
    trains on clean crops (TAP, SEP).

    Args:
        model: the surrogate (trained in place).
        sampler: crops with arrays ``image``, ``fg`` and ``bound``.
        rng: source of crop positions and flips.
        steps: surrogate steps.
        batch_size: crops per step.
        lr: Adam learning rate.
        noise: the noise store, changed in place.
        noise_update: the inner noise step.
        view: the attacker's pipeline applied to each training batch ``(x + delta, y)`` (EOT); ``None``: none.
        on_step: called with the step number (1-based) after each step (SEP keeps checkpoints).
        progress: ``progress(description, step, steps)``.
        description: progress text.

    Returns:
        A small log: steps, first and last loss, a loss curve of at most 20 averaged points.
    """
    loss_fn = segmentation_loss()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses: list[float] = []
    for step in range(1, steps + 1):
        crops = sampler.sample(rng, batch_size)
        x = sampler.tensor(crops, "image")
        y = sampler.tensor(crops, "fg")
        if noise is not None and noise_update is not None:
            bound = sampler.tensor(crops, "bound")
            delta = noise_update(x, y, bound, project(to_tensor(crops.take(noise)), x, bound))
            crops.put(noise, delta.squeeze(1).numpy())
            x = x + delta
        if view is not None:
            x, y = view(x, y)
        losses.append(train_step(model, optimizer, loss_fn, x, y))
        if on_step is not None:
            on_step(step)
        if progress is not None:
            progress(description, step, steps)
    model.eval()
    return {
        "steps": steps,
        "loss_first": _round(losses[:1]),
        "loss_last": _round(losses[-1:]),
        "loss_curve": curve(losses),
    }


def train_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> float:
    """One optimiser step of ``model`` (train mode) on ``loss_fn(segment(model, x), y)``; returns the loss."""
    model.train()
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(segment(model, x), y)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def _round(values: Sequence[float]) -> float | None:
    return round(float(values[0]), 5) if values else None


def curve(values: Sequence[float], points: int = 20) -> list[float]:
    """At most ``points`` averages of consecutive chunks of ``values`` (a JSON-sized loss curve)."""
    if not values:
        return []
    chunks = np.array_split(np.asarray(values, dtype=np.float64), min(points, len(values)))
    return [round(float(chunk.mean()), 5) for chunk in chunks]
