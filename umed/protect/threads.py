"""A fixed torch thread count for the protector's arithmetic, so that its bytes do not depend on the machine.

torch splits a convolution or a reduction over its intra-op threads, and the float sums then come out in another
order: with the fitted default protector, one BraTS volume applied with one thread got other bytes than with
torch's default threads, and a Dask worker (one thread) other bytes than the serial run. :func:`fixed_threads`
runs a block with :data:`PROTECT_THREADS` torch threads and restores the caller's count after it; the fit
(:func:`umed.protect.fit.fit_protector`) and every perturbation (:func:`umed.protect.apply.protect_array`) run in
it, so the same version, settings, inputs and seed give the same bytes serially, on any number of workers, and
with any ``OMP_NUM_THREADS``. (Other CPU instruction sets can still round differently; that is not covered.)

torch's CPU builds keep the count per Python thread (OpenMP's ``omp_set_num_threads`` sets the calling thread's),
so a block sets and restores its own thread's count, and blocks in the threads of one Dask worker do not interfere.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["PROTECT_THREADS", "fixed_threads"]

PROTECT_THREADS = 1
"""torch intra-op threads of the protector's arithmetic (one: the count every machine and worker can give)."""


@contextlib.contextmanager
def fixed_threads() -> Iterator[None]:
    """Run the block with :data:`PROTECT_THREADS` torch threads; the caller's count is restored afterwards.

    Example:
        >>> import torch
        >>> before = torch.get_num_threads()
        >>> with fixed_threads():
        ...     torch.get_num_threads()
        1
        >>> torch.get_num_threads() == before
        True
    """
    import torch

    restore = torch.get_num_threads()
    if restore != PROTECT_THREADS:
        torch.set_num_threads(PROTECT_THREADS)
    try:
        yield
    finally:
        if torch.get_num_threads() != restore:
            torch.set_num_threads(restore)
