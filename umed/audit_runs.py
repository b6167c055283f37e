"""The audit's victim runs: for one victim and one defense, train on the protected and on the clean training cases
(same seed and settings), score every epoch on the clean test cases and on the validation cases (nnU-Net's selection
rule), and for ``mix`` also train on the clean half alone. Runs on clean data can be cached across audits.

Kept apart from :mod:`umed.audit` (which loads, slices and reports) so that the training side reads on its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from umed.victims import VictimRun

if TYPE_CHECKING:
    from umed.audit import AuditConfig, AuditRun
    from umed.protectors.base import ProgressCallback

__all__ = ["CleanCache", "VictimData", "audit_run"]


@dataclass
class VictimData:
    """What one kind of victim (slices or volumes) trains and is scored on, in normalised units.

    Attributes:
        clean, protected: fitting samples ``(N, *spatial)`` float32 (the training cases minus the validation cases).
        labels: their labels, integer.
        groups: ``(N,)`` case index of every sample (``mix`` replaces whole cases).
        test_x, test_y, test_spacing: clean test samples, labels and pixel sizes in mm ``(M, ndim)``.
        val_clean, val_protected, val_y: the validation cases' samples (``None`` without a validation split).
        patch: training patch (``None``: whole samples).
        patches_per_epoch: patches per epoch in patch mode.
        sliding_window: score by sliding-window inference with ``patch`` windows.
    """

    clean: np.ndarray
    protected: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    test_spacing: np.ndarray
    val_clean: np.ndarray | None
    val_protected: np.ndarray | None
    val_y: np.ndarray | None
    patch: tuple[int, ...] | None
    patches_per_epoch: int | None
    sliding_window: bool = False

    def subset(self, groups: Sequence[int]) -> VictimData:
        """The same data restricted to the cases ``groups`` (the clean half of ``mix``); the patch count per epoch is
        kept, so both victims take the same number of steps in patch mode."""
        keep = np.isin(self.groups, list(groups))
        return VictimData(
            self.clean[keep], self.protected[keep], self.labels[keep], self.groups[keep], self.test_x, self.test_y,
            self.test_spacing, self.val_clean, self.val_protected, self.val_y, self.patch, self.patches_per_epoch,
            self.sliding_window,
        )


def _train(cfg: AuditConfig, victim: str, defense: str, vd: VictimData, kind: str,
           progress: ProgressCallback | None) -> VictimRun:
    from umed.victims import train_victim

    protected = kind == "protected"
    return train_victim(
        vd.protected if protected else vd.clean, vd.labels, vd.test_x, vd.test_y,
        victim=victim, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed, defense=defense,
        progress=progress, description=f"{victim} / {defense} / {kind} data",
        clean_train_x=vd.clean, train_groups=vd.groups, test_spacing=vd.test_spacing, patch_size=vd.patch,
        patches_per_epoch=vd.patches_per_epoch, sliding_window=vd.sliding_window,
        val_x=(vd.val_protected if protected else vd.val_clean), val_y=vd.val_y,
    )


def audit_run(cfg: AuditConfig, victim: str, defense: str, vd: VictimData, floor: float, cache: CleanCache | None,
              progress: ProgressCallback | None) -> AuditRun:
    """Train ``victim`` under ``defense`` on clean and on protected data (the clean run from ``cache`` when stored);
    for ``mix``, also on the clean half alone (the cases the protected run made clean, no defense)."""
    from umed.audit import AuditRun

    results: dict[str, VictimRun] = {}
    for kind in ("clean", "protected"):
        if kind == "clean" and cache is not None:
            cached = cache.load(victim, defense)
            if cached is not None:
                results[kind] = cached
                if progress:
                    progress(f"{victim} / {defense} / clean data (cached)", cfg.epochs, cfg.epochs)
                continue
        results[kind] = _train(cfg, victim, defense, vd, kind, progress)
        if kind == "clean" and cache is not None:
            cache.store(victim, defense, results[kind])
    half = None
    clean_groups = results["protected"].details.get("clean_groups") if defense == "mix" else None
    if clean_groups:
        half = _train(cfg, victim, "none", vd.subset(clean_groups), "clean half", progress)
        half.details = {**half.details, "clean_half_of": "mix", "groups": list(clean_groups)}
    return AuditRun(victim, defense, results["clean"], results["protected"], floor, clean_half=half)


class CleanCache:
    """Runs on *clean* data kept in ``cfg.clean_cache`` and reused: a clean run depends only on the clean data and the
    victim settings. Keyed by a SHA-256 of the arrays (hashed once) and the settings."""

    def __init__(self, cfg: AuditConfig, data: dict[str, VictimData], umed_version: str | None) -> None:
        self.cfg, self.umed_version = cfg, umed_version
        self.digests = {
            key: _arrays_digest([vd.clean, vd.labels, vd.groups, vd.test_x, vd.test_y, vd.test_spacing]
                                + ([vd.val_clean, vd.val_y] if vd.val_clean is not None else []))
            for key, vd in data.items()
        }

    def _key(self, victim: str, defense: str) -> str:
        cfg = self.cfg
        settings = dict(victim=victim, defense=defense, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                        seed=cfg.seed, size=cfg.size, crop=cfg.crop, crop3d=cfg.crop3d, umed=self.umed_version)
        return _clean_run_key(self.digests["3d" if victim == "unet3d" else "2d"], settings)

    def load(self, victim: str, defense: str) -> VictimRun | None:
        return _cached_clean_run(self.cfg.clean_cache, self._key(victim, defense))

    def store(self, victim: str, defense: str, run: VictimRun) -> None:
        _store_clean_run(self.cfg.clean_cache, self._key(victim, defense), run)


def _arrays_digest(arrays: Sequence[np.ndarray]) -> str:
    """SHA-256 of the arrays a clean victim run sees (dtype, shape and bytes of each), computed once per audit."""
    import hashlib

    digest = hashlib.sha256()
    for array in arrays:
        contiguous = np.ascontiguousarray(array)
        digest.update(str((contiguous.dtype.str, contiguous.shape)).encode("utf-8"))
        digest.update(contiguous.tobytes())
    return digest.hexdigest()


def _clean_run_key(data_digest: str, settings: dict[str, Any]) -> str:
    """The clean cache's file name: SHA-256 of the data digest and the run's settings."""
    import hashlib


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


    from umed.io.atomic import atomic_file

    folder.mkdir(parents=True, exist_ok=True)
    with atomic_file(folder / f"{key}.npz") as temp:
        with open(temp, "wb") as handle:
            np.savez_compressed(handle, predictions=run.predictions)
    with atomic_file(folder / f"{key}.json") as temp:
        temp.write_text(json.dumps(run.to_dict()), encoding="utf-8")


