"""Projection onto a per-voxel L-inf budget and sign-gradient PGD on the segmentation loss of surrogate(s).

Conventions: a *bound* map ``(B, 1, H, W)`` holds the L-inf budget of every voxel (``eps * eps_scale`` on the
support, 0 elsewhere); a projected perturbation satisfies ``|delta| <= bound`` exactly and keeps ``x + delta``
inside ``[min(x, 0), max(x, 1)]``, the range :func:`umed.protect.protect_array` clips to.

Example:
    >>> import torch
    >>> x = torch.tensor([[[[0.5, 0.5], [0.99, 0.5]]]])
    >>> bound = torch.tensor([[[[0.1, 0.0], [0.1, 0.1]]]])
    >>> [round(v, 4) for v in project(torch.full_like(x, 0.5), x, bound).flatten().tolist()]
    [0.1, 0.0, 0.01, 0.1]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from umed.protectors.surrogate import segment, segmentation_loss

__all__ = ["project", "pgd", "top_k_mask"]

View = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def project(delta: torch.Tensor, x: torch.Tensor, bound: torch.Tensor) -> torch.Tensor:
    """Make ``delta`` admissible: ``x + delta`` inside ``[min(x, 0), max(x, 1)]``, then ``|delta| <= bound``.

    The bound is applied last so it holds exactly in float32; voxels with ``bound == 0`` get exactly ``+0.0``.

    Shape:
        All ``(B, 1, H, W)``; returns the same shape.
    """
    lower = torch.clamp(x, max=0.0)
    upper = torch.clamp(x, min=1.0)
    delta = torch.clamp(x + delta, lower, upper) - x
    delta = torch.clamp(delta, -bound, bound)
    return torch.where(bound > 0, delta, torch.zeros_like(delta))


def pgd(
    models: Sequence[nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    bound: torch.Tensor,
    *,
    steps: int,
    step_size: float,
    maximize: bool,
    init: torch.Tensor | None = None,
    view: View | None = None,
) -> torch.Tensor:
    """Sign-gradient PGD on the segmentation loss, averaged over ``models``, in a per-voxel L-inf ball.

    Error-minimising (EM, SALM: ``maximize=False``) or error-maximising (TAP, SEP: ``maximize=True``). The step is
    ``step_size * bound`` per voxel (``step_size`` is a fraction of the budget; 0.25 gives eps/4), and every
    iterate is :func:`project`-ed. Gradients flow only to ``delta``; the models' weights get none.

    Args:
        models: surrogate(s), in eval mode for the attack.
        x: clean images ``(B, 1, H, W)``.
        y: labels ``(B, 1, H, W)`` in {0, 1}.
        bound: per-voxel budget ``(B, 1, H, W)``; 0 freezes a voxel.
        steps: PGD steps.
        step_size: step as a fraction of ``bound``.
        maximize: ascend (True) or descend (False) the loss.
        init: starting perturbation (projected first); zeros when ``None``.
        view: what the attacker's pipeline makes of ``(x + delta, y)`` (:class:`umed.protectors.eot.AttackerView`,
            one draw per step: expectation over transformation, REM-style); ``None``: the plain image.

    Returns:
        ``delta`` ``(B, 1, H, W)``, detached, ``|delta| <= bound``.
    """
    loss_fn = segmentation_loss()
    modes = [model.training for model in models]
    for model in models:
        model.eval()
    delta = project(torch.zeros_like(x) if init is None else init.detach(), x, bound)
    direction = 1.0 if maximize else -1.0
    try:
        for _ in range(steps):
            delta.requires_grad_(True)
            seen, labels = (x + delta, y) if view is None else view(x + delta, y)
            loss = sum(loss_fn(segment(model, seen), labels) for model in models) / len(models)
            (grad,) = torch.autograd.grad(loss, delta)
            delta = project(delta.detach() + direction * step_size * bound * grad.sign(), x, bound)
    finally:
        for model, mode in zip(models, modes):
            model.train(mode)
    return delta.detach()


def top_k_mask(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, support: torch.Tensor, k_fraction: float
) -> torch.Tensor:
    """SALM's significant voxels: per slice, the ``K`` support voxels with the largest ``|dL/dx|``.

    ``K = max(1, floor(k_fraction * |support|))`` for a slice with support, 0 otherwise; ties go to the lower
    raster index (stable), so the mask is deterministic.

    Shape:
        ``x, y, support (B, 1, H, W) -> mask (B, 1, H, W)`` bool.
    """
    mode = model.training
    model.eval()
    try:
        inputs = x.detach().clone().requires_grad_(True)
        loss = segmentation_loss()(segment(model, inputs), y)
        (grad,) = torch.autograd.grad(loss, inputs)
    finally:
        model.train(mode)
    score = grad.abs().reshape(grad.shape[0], -1).numpy().astype(np.float64)
    allowed = support.reshape(support.shape[0], -1).numpy().astype(bool)
    mask = np.zeros_like(allowed)
    for b in range(score.shape[0]):
        count = int(allowed[b].sum())
        if count == 0:
            continue
        k = max(1, int(math.floor(k_fraction * count)))
        ranked = np.argsort(-np.where(allowed[b], score[b], -1.0), kind="stable")[:k]
        mask[b, ranked] = True
    return torch.from_numpy(mask.reshape(support.shape))
