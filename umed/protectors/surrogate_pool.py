"""A pool of surrogates of staggered ages, re-initialised in turn: what the generators of a min-min fit must fool.

A generator trained against one surrogate that keeps learning rewards what that *trained* network relies on. A
protection is judged by what a *new* network learns first, so the pool keeps ``size`` surrogates whose
re-initialisations are spread evenly over the period ``reinit_every``: at any step the pool holds networks from
fresh to ``reinit_every`` generator steps old, and the generators minimise their mean loss. ``size == 1`` is the
single surrogate of earlier versions (same seeds, same re-initialisation steps, same bytes).

Member ``i``'s generation ``g`` is seeded by ``derive_seed(seed, method, "surrogate", g)`` for ``i == 0`` and
``derive_seed(seed, method, "surrogate", g, i)`` otherwise.

Example:
    >>> import torch
    >>> pool = SurrogatePool(seed=0, method="umed", size=2, reinit_every=4, lr=1e-3)
    >>> [pool.offset(i) for i in range(2)]
    [0, 2]
    >>> pool.advance(2, steps=10), pool.reinits
    (True, 1)
"""

from __future__ import annotations

import torch
from torch import nn

from umed.protectors.seeding import derive_seed
from umed.protectors.surrogate import make_surrogate, segment
from umed.protectors.surrogate_training import train_step

__all__ = ["SurrogatePool"]

Loss = nn.Module  # the segmentation loss: loss(logits, labels)


class SurrogatePool:
    """``size`` surrogate U-Nets with Adam optimisers; member ``i`` is re-initialised at the generator steps ``s``
    with ``(s + offset(i)) % reinit_every == 0`` (never when ``reinit_every`` is 0)."""

    def __init__(self, *, seed: int, method: str, size: int, reinit_every: int, lr: float) -> None:
        self.seed, self.method, self.size, self.reinit_every, self.lr = seed, method, size, reinit_every, lr
        self.generations = [0] * size
        self.members = [self._new(i) for i in range(size)]

    @property
    def reinits(self) -> int:
        """Re-initialisations so far, over all members."""
        return sum(self.generations)

    def offset(self, index: int) -> int:
        """Member ``index``'s phase in the re-initialisation period (evenly spread)."""
        return index * self.reinit_every // self.size if self.reinit_every else 0

    def _new(self, index: int) -> tuple[nn.Module, torch.optim.Optimizer]:
        extra = (index,) if index else ()
        model = make_surrogate(seed=derive_seed(self.seed, self.method, "surrogate", self.generations[index], *extra))
        return model, torch.optim.Adam(model.parameters(), lr=self.lr)

    def loss(self, loss_fn: Loss, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean loss of the members on ``x`` (eval mode, weights frozen: the gradient reaches only ``x``)."""
        total = []
        for model, _ in self.members:
            for parameter in model.parameters():
                parameter.requires_grad_(False)
            model.eval()
            total.append(loss_fn(segment(model, x), y))
            for parameter in model.parameters():
                parameter.requires_grad_(True)
        return torch.stack(total).mean()

    def step(self, loss_fn: Loss, x: torch.Tensor, y: torch.Tensor) -> float:
        """One Adam step of every member on ``(x, y)``; returns their mean loss."""
        losses = [train_step(model, optimizer, loss_fn, x, y) for model, optimizer in self.members]
        return sum(losses) / len(losses)

    def advance(self, step: int, *, steps: int) -> bool:
        """After generator step ``step`` (1-based) of ``steps``: re-initialise the members due; True if any was."""
        if not self.reinit_every or step >= steps:
            return False
        due = [i for i in range(self.size) if (step + self.offset(i)) % self.reinit_every == 0]
        for index in due:
            self.generations[index] += 1
            self.members[index] = self._new(index)
        return bool(due)
