"""The demo: the whole job on synthetic phantoms, with no download.

:func:`run_demo` makes texture-lesion phantoms (:mod:`umed.phantom`), fits the shipped UMed protector (config ``umed``,
with the few overrides in :data:`DEMO_OVERRIDES`) on the training cases only, applies it to every case, and audits the
protection at native resolution: a UNet trained on clean and on protected training cases, without and with a Gaussian
blur, scored on the clean test cases under the audit's three selection rules. The numbers are whatever the run
measures; on phantoms they show the pipeline and what the audit measures, not how well a real dataset is protected.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from umed.audit import AuditReport
    from umed.protect import ProtectSummary

__all__ = [
    "DEMO_AUDIT",
    "DEMO_LABELS",
    "DEMO_OVERRIDES",
    "DEMO_PHANTOMS",
    "DEMO_TEST_CASES",
    "SHIPPED_CONFIG",
    "DemoResult",
    "run_demo",
]

#: The shipped protect settings the demo uses (the file ``umed protect`` documents as its defaults).
SHIPPED_CONFIG = "umed"

#: The only changes to the shipped settings, forced by the demo's 2-minute budget on 2 CPU cores: fewer generator
#: steps (shipped 300), and crops the size of the phantoms' 64x64 slices (shipped 96, which would pad every crop).
DEMO_OVERRIDES: dict[str, Any] = {"steps": 30, "crop": 64}

#: The phantoms: 8 volumes of 64x64x16 voxels; the structure is the lesion (label 2, about 1% of each volume).
DEMO_PHANTOMS: dict[str, Any] = {"n_cases": 8, "ndim": 3, "shape": (64, 64, 16)}
DEMO_LABELS = (2,)

#: Held out for testing: the protector never sees them, the victims are scored on their clean images.
DEMO_TEST_CASES = ("phantom_006", "phantom_007")

#: The audit: native resolution (32x32 training crops of the 64x64 slices, full slices at test), half as many slices
#: without structure as with it, 12 epochs at learning rate 0.005, the plain victim and one ordinary defense (a
#: Gaussian blur of sigma 1 voxel).
DEMO_AUDIT: dict[str, Any] = {
    "epochs": 12,
    "lr": 0.005,
    "batch_size": 8,
    "crop": 32,
    "empty_ratio": 0.5,
    "defenses": ("none", "gaussian"),
}

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class DemoResult:
    """What :func:`run_demo` did.

    Attributes:
        images, masks: the phantoms' image and label folders.
        protected: the protected copy (with its ``manifest.json``).
        fit_cases: the case ids the protector was fitted on (the training cases).
        overrides: the demo's changes to the shipped ``method_settings``, as ``{name: (demo, shipped)}``.
        protect: the protect run's summary.
        audit: the audit's report (``audit.paths`` lists the report files and figures).
        seconds: wall time of the whole demo.
    """

    images: Path
    masks: Path
    protected: Path
    fit_cases: tuple[str, ...]
    overrides: dict[str, tuple[Any, Any]]
    protect: ProtectSummary
    audit: AuditReport
    seconds: float


def _demo_key(out: Path, seed: int) -> Path:
    """The demo's mark key, drawn from its seed so that the demo is reproducible (``umed protect`` draws a release's
    key with :mod:`secrets`); ``umed protect`` reuses the key file it finds."""
    import numpy as np

    from umed.verify import MarkKey, VerifySettings, save_key

    settings = VerifySettings.shipped()
    seed_of_key = int(np.random.default_rng([seed, 21]).integers(0, 2**63 - 1))
    path = out / "protected.umed-key.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_key(MarkKey(seed_of_key, settings.family, settings.mark_share), path)


def run_demo(
    out: Path,
    *,
    seed: int = 0,
    progress: Progress | None = None,
    on_protected: Callable[[ProtectSummary], None] | None = None,
) -> DemoResult:
    """Make the phantoms in ``out/phantoms``, protect them into ``out/protected`` and audit into ``out/report``.

    Args:
        out: the demo folder (created; existing demo files in it are overwritten).
        seed: seed of the phantoms, the protector and the audit.
        progress: ``callback(description, completed, total)`` for the protect and audit steps.
        on_protected: called with the protect summary before the audit starts (the CLI prints it there).

    Returns:
        :class:`DemoResult`.

    Raises:
        UmedError: any failure of the steps (bad output folder, a case that could not be protected, ...).
    """
    from umed.audit import AuditConfig, run_audit
    from umed.errors import UmedError
    from umed.phantom import make_phantom_dataset
    from umed.protect import protect_dataset
    from umed.settings import load_protect_config

    started = time.perf_counter()
    out = Path(out)
    images, masks = make_phantom_dataset(out / "phantoms", seed=seed, **DEMO_PHANTOMS)
    ids = sorted(path.name.split(".")[0] for path in images.glob("*.nii.gz"))
    fit_cases = tuple(case for case in ids if case not in DEMO_TEST_CASES)
    cfg = load_protect_config(
        SHIPPED_CONFIG,
        images=images,
        masks=masks,
        out=out / "protected",
        seed=seed,
        structure_labels=DEMO_LABELS,
        fit_cases=fit_cases,
    )
    shipped = cfg.method_settings
    cfg = dataclasses.replace(cfg, method_settings={**shipped, **DEMO_OVERRIDES}, key_out=_demo_key(out, seed))
    summary = protect_dataset(cfg, progress=progress, overwrite=True)
    if summary.failed:
        raise UmedError(
            f"{cfg.out}: {len(summary.failed)} phantom(s) could not be protected "
            f"({', '.join(r.case_id for r in summary.failed)})"
        )
    if on_protected is not None:
        on_protected(summary)
    audit_cfg = AuditConfig(
        clean=images,
        protected=cfg.out,
        masks=masks,
        out=out / "report",
        seed=seed,
        test_cases=DEMO_TEST_CASES,
        structure_labels=DEMO_LABELS,
        key=summary.key_path,  # the release's mark: every victim is also tested for it (umed verify)
        **DEMO_AUDIT,
    )
    report = run_audit(audit_cfg, progress=progress)
    overrides = {key: (value, shipped.get(key)) for key, value in DEMO_OVERRIDES.items()}
    return DemoResult(images, masks, cfg.out, fit_cases, overrides, summary, report, time.perf_counter() - started)
