"""Seeds for every random choice of a protector: run seed + method name + slice key, stable everywhere.

Example:
    >>> derive_seed(0, "lsp", "case1/3") == derive_seed(0, "lsp", "case1/3")
    True
    >>> float(key_rng(0, "random", "case1/3").uniform()) == float(key_rng(0, "random", "case1/3").uniform())
    True
"""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["derive_seed", "key_rng"]


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any parts (run seed, method name, slice key), stable across runs and platforms.

    Python's ``hash`` is salted per process, so SHA-256 of the parts' text is used instead.
    """
    digest = hashlib.sha256("\x1f".join(str(part) for part in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def key_rng(*parts: object) -> np.random.Generator:
    """``np.random.default_rng`` seeded by :func:`derive_seed` of ``parts``."""
    return np.random.default_rng(derive_seed(*parts))
