"""The audit's victim runs: for one victim and one defense, train on the protected and on the clean training cases
(same seed and settings), score every epoch on the clean test cases and on the validation cases (nnU-Net's selection
rule), and for ``mix`` also train on the clean half alone. Runs on clean data come from the clean cache when stored
(:mod:`umed.audit.cache`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from umed.audit.cache import CleanCache
from umed.audit.config import AuditConfig
from umed.audit.records import AuditRun, VictimRun
from umed.audit.samples import VictimData
from umed.audit.training import TrainSettings, train_victim

if TYPE_CHECKING:
    from umed.protectors.base import ProgressCallback

__all__ = ["audit_run"]


def _train(
    cfg: AuditConfig,
    victim: str,
    defense: str,
    vd: VictimData,
    kind: str,
    progress: ProgressCallback | None,
    probes: Any = None,
) -> VictimRun:
    protected = kind == "protected"
    settings = TrainSettings(
        epochs=cfg.epochs,
        batch_size=cfg.batch_for(victim),
        seed=cfg.seed,
        victim=victim,
        lr=cfg.lr,
        defense=defense,
        patch_size=vd.patch,
        patches_per_epoch=vd.patches_per_epoch,
        sliding_window=vd.sliding_window,
        description=f"{victim} / {defense} / {kind} data",
    )
    tests: dict[str, Any] = {}

    def verify(model: Any, epoch: int) -> None:  # the mark test of the last epoch's model
        if probes is not None and epoch == cfg.epochs:
            window = vd.patch if victim == "unet3d" else None
            tests["verify"] = probes.test(model, window=window).to_dict()

    run = train_victim(
        vd.protected if protected else vd.clean,
        vd.labels,
        vd.test_x,
        vd.test_y,
        settings,
        progress=progress,
        clean_train_x=vd.clean,
        train_groups=vd.groups,
        test_spacing=vd.test_spacing,
        val_x=(vd.val_protected if protected else vd.val_clean),
        val_y=vd.val_y,
        on_epoch=verify,
    )
    run.details = {**run.details, **tests}
    return run


def audit_run(
    cfg: AuditConfig,
    victim: str,
    defense: str,
    vd: VictimData,
    floor: float,
    cache: CleanCache | None,
    progress: ProgressCallback | None,
    probes: Any = None,
) -> AuditRun:
    """Train ``victim`` under ``defense`` on clean and on protected data (the clean run from ``cache`` when stored);
    for ``mix``, also on the clean half alone (the cases the protected run made clean, no defense). With ``probes``
    (:class:`umed.verify.memory.MemoryProbes`), each victim's last model is also tested for the mark
    (``details["verify"]``)."""
    results: dict[str, VictimRun] = {}
    for kind in ("clean", "protected"):
        if kind == "clean" and cache is not None:
            cached = cache.load(victim, defense)
            if cached is not None and (probes is None or "verify" in cached.details):
                results[kind] = cached
                if progress:
                    progress(f"{victim} / {defense} / clean data (cached)", cfg.epochs, cfg.epochs)
                continue
        results[kind] = _train(cfg, victim, defense, vd, kind, progress, probes)
        if kind == "clean" and cache is not None:
            cache.store(victim, defense, results[kind])
    half = None
    clean_groups = results["protected"].details.get("clean_groups") if defense == "mix" else None
    if clean_groups:
        half = _train(cfg, victim, "none", vd.subset(clean_groups), "clean half", progress)
        half.details = {**half.details, "clean_half_of": "mix", "groups": list(clean_groups)}
    return AuditRun(victim, defense, results["clean"], results["protected"], floor, clean_half=half)
