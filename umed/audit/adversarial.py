"""Adversarial examples for the ``adversarial`` defense: PGD on the victim's training loss (Madry et al., ICLR 2018).

Example:
    >>> import torch
    >>> model = torch.nn.Conv2d(1, 2, 3, padding=1)
    >>> loss_fn = lambda logits, y: torch.nn.functional.cross_entropy(logits, y[:, 0].long())
    >>> x, y = torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 8, 8)
    >>> x_adv = pgd_attack(model, loss_fn, x, y, eps=0.1, generator=torch.Generator().manual_seed(0))
    >>> x_adv.shape, bool((x_adv - x).abs().max() <= 0.1 + 1e-7)
    (torch.Size([2, 1, 8, 8]), True)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported lazily so that ``umed --help`` stays fast
    import torch

__all__ = ["pgd_attack"]


def pgd_attack(
    model: torch.nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float = 8 / 255,
    steps: int = 3,
    step_size: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Projected gradient ascent on the training loss inside an L-inf ball (Madry et al., ICLR 2018).

    The model's parameters get no gradient (``torch.autograd.grad`` on the input only) and keep their mode.

    Args:
        model: the network being trained.
        loss_fn: ``loss_fn(logits, y)``.
        x: images ``(B, 1, *spatial)`` float32 in normalised units.
        y: labels ``(B, 1, *spatial)``.
        eps: L-inf radius in normalised units (8/255 = 8 grey levels of an 8-bit image).
        steps: number of ascent steps.
        step_size: step length; default ``2.5 * eps / steps``.
        generator: draws the random start in the ball.

    Returns:
        The adversarial images, same shape and dtype, detached; ``|x_adv - x| <= eps``.
    """
    import torch

    step = 2.5 * eps / steps if step_size is None else step_size
    delta = (torch.rand(x.shape, generator=generator, dtype=x.dtype) * 2 - 1) * eps
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = loss_fn(model(x + delta), y)
        (grad,) = torch.autograd.grad(loss, delta)
        delta = (delta.detach() + step * grad.sign()).clamp_(-eps, eps)
    return (x + delta).detach()
