"""The owner's secret key: which mark of the family a release carries.

The key is drawn with :mod:`secrets` when ``umed protect`` runs (never from the run's seed, which is not secret) and
saved to a small JSON file that the owner keeps: never inside the released folder or its manifest. Its SHA-256
(:attr:`MarkKey.fingerprint`) may be shown: it reveals nothing about the mark.

Example:
    >>> key = MarkKey(seed=42, family=MarkFamily(), share=0.5)
    >>> MarkKey.from_dict(key.to_dict()) == key, len(key.fingerprint)
    (True, 16)
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from umed.errors import ConfigError
from umed.verify.family import MarkFamily
from umed.verify.secret_file import read_secret_json, write_secret_json

__all__ = ["KEY_FORMAT", "MarkKey", "default_key_path", "draw_key", "load_key", "release_key", "save_key"]

KEY_FORMAT = "umed-mark-key/1"


@dataclass(frozen=True)
class MarkKey:
    """A secret mark key.

    Attributes:
        seed: the key's mark seed in ``family`` (secret).
        family: the mark family.
        share: the mark's share of the per-case perturbation energy (the protection gets the rest).
        private_cases: the case ids drawn private when the release was made (``umed protect --private-share``):
            never written to the release, the reference of the mark-free test (:mod:`umed.verify.cases`).
    """

    seed: int
    family: MarkFamily
    share: float
    private_cases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 0 < self.share <= 1:
            raise ConfigError(f"mark key: share must be in (0, 1] (got {self.share})")

    @property
    def fingerprint(self) -> str:
        """First 16 hex digits of the SHA-256 of the key file's content: names the key without revealing it."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        out = {"format": KEY_FORMAT, "seed": str(self.seed), "family": self.family.to_dict(), "share": self.share}
        return {**out, "private_cases": list(self.private_cases)} if self.private_cases else out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MarkKey:
        if data.get("format") != KEY_FORMAT:
            raise ConfigError(f"expected a umed mark key ({KEY_FORMAT}) (got format {data.get('format')!r})")
        try:
            return cls(
                seed=int(data["seed"]),
                family=MarkFamily.from_dict(data["family"]),
                share=float(data["share"]),
                private_cases=tuple(str(c) for c in data.get("private_cases", [])),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ConfigError(f"mark key: expected keys seed, family, share (got {sorted(data)})") from error


def draw_key(family: MarkFamily, share: float) -> MarkKey:
    """A fresh secret key (63 random bits from the operating system's generator)."""
    return MarkKey(seed=secrets.randbits(63), family=family, share=share)


def save_key(key: MarkKey, path: Path) -> Path:
    """Write the key file (atomically; readable by its owner only where the file system allows)."""
    return write_secret_json(key.to_dict(), Path(path), indent=2)


def load_key(path: Path) -> MarkKey:
    """Read a key file; a missing, unreadable or wrong file is an :class:`~umed.errors.InputError` naming it."""
    return read_secret_json(path, "umed mark key", MarkKey.from_dict)


def default_key_path(out: Path) -> Path:
    """Where ``umed protect`` keeps the key of the release ``out`` without ``--key-out``: ``OUT.umed-key.json``
    beside OUT (never inside it: OUT is what gets released)."""
    out = Path(out)
    return out.parent / f"{out.name}.umed-key.json"


def release_key(
    out: Path, key_out: Path | None, case_ids: Sequence[str] = (), private_share: float = 0.0
) -> tuple[MarkKey, Path, bool]:
    """The key of a release: the existing key file, or a fresh key (shipped mark settings, and with
    ``private_share`` > 0 a random share of ``case_ids`` drawn private) saved there.

    Returns ``(key, path, drawn)``; ``drawn`` is true when the key was drawn now.

    Raises:
        ConfigError: the key file would lie inside ``out``. InputError: the existing key file is not a umed key.
    """
    import numpy as np

    from umed.verify.cases import draw_private
    from umed.verify.settings import VerifySettings

    path = Path(key_out) if key_out is not None else default_key_path(out)
    if Path(out).resolve() in path.resolve().parents:
        raise ConfigError(f"{path}: the key file must not lie inside the released folder {out} (it is secret)")
    if path.exists():
        return load_key(path), path, False
    settings = VerifySettings.shipped()
    private = draw_private(case_ids, private_share, np.random.default_rng(secrets.randbits(128)))
    key = MarkKey(secrets.randbits(63), settings.family, settings.mark_share, private)
    save_key(key, path)
    return key, path, True
