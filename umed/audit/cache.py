"""The clean-run cache: runs on *clean* data kept in a folder and reused across audits of several protections of one
dataset, since a clean run depends only on the clean data and the victim settings (keyed by a SHA-256 of both).

Example:
    >>> import numpy as np
    >>> key = _clean_run_key(_arrays_digest([np.zeros(3)]), {"victim": "unet", "epochs": 2})
    >>> len(key), key == _clean_run_key(_arrays_digest([np.zeros(3)]), {"epochs": 2, "victim": "unet"})
    (32, True)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from umed.audit.config import AuditConfig
from umed.audit.records import VictimRun
from umed.audit.samples import VictimData
from umed.errors import ConfigError
from umed.io.atomic import atomic_file

__all__ = ["CleanCache"]


class CleanCache:
    """Runs on *clean* data kept in ``cfg.clean_cache`` and reused: a clean run depends only on the clean data and the
    victim settings. Keyed by a SHA-256 of the arrays (hashed once) and the settings."""

    def __init__(self, cfg: AuditConfig, data: dict[str, VictimData], umed_version: str | None) -> None:
        if cfg.clean_cache is None:
            raise ConfigError("clean_cache: no folder given (expected a folder for the clean runs)")
        self.cfg, self.folder, self.umed_version = cfg, cfg.clean_cache, umed_version
        self.digests = {
            key: _arrays_digest(
                [vd.clean, vd.labels, vd.groups, vd.test_x, vd.test_y, vd.test_spacing]
                + ([vd.val_clean, vd.val_y] if vd.val_clean is not None and vd.val_y is not None else [])
            )
            for key, vd in data.items()
        }

    def _key(self, victim: str, defense: str) -> str:
        cfg = self.cfg
        settings = dict(
            victim=victim,
            defense=defense,
            epochs=cfg.epochs,
            batch_size=cfg.batch_for(victim),
            lr=cfg.lr,
            seed=cfg.seed,
            size=cfg.size,
            crop=cfg.crop,
            crop3d=cfg.crop3d,
            umed=self.umed_version,
        )
        return _clean_run_key(self.digests["3d" if victim == "unet3d" else "2d"], settings)

    def load(self, victim: str, defense: str) -> VictimRun | None:
        return _cached_clean_run(self.folder, self._key(victim, defense))

    def store(self, victim: str, defense: str, run: VictimRun) -> None:
        _store_clean_run(self.folder, self._key(victim, defense), run)


def _arrays_digest(arrays: Sequence[np.ndarray]) -> str:
    """SHA-256 of the arrays a clean victim run sees (dtype, shape and bytes of each), computed once per audit."""
    digest = hashlib.sha256()
    for array in arrays:
        contiguous = np.ascontiguousarray(array)
        digest.update(str((contiguous.dtype.str, contiguous.shape)).encode("utf-8"))
        digest.update(contiguous.tobytes())
    return digest.hexdigest()


def _clean_run_key(data_digest: str, settings: dict[str, Any]) -> str:
    """The clean cache's file name: SHA-256 of the data digest and the run's settings."""
    text = json.dumps({"data": data_digest, **settings}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _cached_clean_run(folder: Path, key: str) -> VictimRun | None:
    """The clean run stored under ``key``, or ``None`` (absent or unreadable: it is then trained again)."""
    meta, arrays = folder / f"{key}.json", folder / f"{key}.npz"
    if not (meta.is_file() and arrays.is_file()):
        return None
    try:
        doc = json.loads(meta.read_text(encoding="utf-8"))
        with np.load(arrays) as saved:
            predictions = saved["predictions"]
    except (OSError, ValueError, KeyError):
        return None

    run = VictimRun.from_dict(doc, predictions)
    run.details = {**run.details, "from_clean_cache": key}
    return run


def _store_clean_run(folder: Path, key: str, run: VictimRun) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_file(folder / f"{key}.npz") as temp:
        with open(temp, "wb") as handle:
            np.savez_compressed(handle, predictions=run.predictions)
    with atomic_file(folder / f"{key}.json") as temp:
        temp.write_text(json.dumps(run.to_dict()), encoding="utf-8")
