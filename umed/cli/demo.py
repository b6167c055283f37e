"""``umed demo``: the whole job on synthetic phantoms, with no download: make phantoms, protect them with the shipped
UMed settings, and audit the protection with a victim that learns the phantoms' lesion from clean data."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from umed.cli import app

#: The shipped protect settings the demo uses (the file ``umed protect`` documents as its defaults).
SHIPPED_CONFIG = "umed"

#: The only changes to the shipped settings, forced by the demo's 2-minute budget on 2 CPU cores: fewer generator
#: steps, and crops the size of the phantoms' 64x64 slices (the shipped 96 would pad every crop).
DEMO_OVERRIDES = {"steps": 30, "crop": 64}

#: The phantoms: 8 cases of 64x64x24 voxels, structure = the lesion (label 2, 0.8-1.4% of each volume).
DEMO_CASES, DEMO_SHAPE, DEMO_LABELS = 8, (64, 64, 24), (2,)

#: The audit: native resolution (32x32 training crops of the 64x64 slices, full slices at test), half as many slices
#: without structure as with it, the plain victim, and one ordinary defense (a Gaussian blur of sigma 1 voxel).
DEMO_AUDIT = {"epochs": 16, "batch_size": 8, "crop": 32, "empty_ratio": 0.5, "defenses": ("none", "gaussian")}


@app.command("demo")
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the phantoms, the protected copy and the report.")] = Path("umed-demo"),
    seed: Annotated[int, typer.Option("--seed", help="Seed of the phantoms, the protector and the audit.")] = 0,
) -> None:
    """Make 8 synthetic 3D phantoms (NIfTI) whose lesion differs from its organ by texture, protect them with the
    shipped UMed settings (fewer steps), and audit: a UNet trained on clean vs on protected phantoms, with and without
    a Gaussian blur, scored on clean test phantoms under three model-selection rules.

    The phantoms are not real data: the demo shows the pipeline and what the audit measures, not how well a real
    dataset is protected (see the README's results for that).
    """
    import dataclasses

    from umed.audit import AuditConfig, run_audit
    from umed.cli._console import console, fail, progress_callback
    from umed.cli.audit import print_audit_report
    from umed.cli.protect import print_protect_summary
    from umed.errors import UmedError
    from umed.phantom import make_phantom_dataset
    from umed.protect import protect_dataset
    from umed.settings import load_protect_config

    started = time.perf_counter()
    try:
        images, masks = make_phantom_dataset(out / "phantoms", n_cases=DEMO_CASES, ndim=3, shape=DEMO_SHAPE, seed=seed)
        console.print(f"phantoms: {images} (labels in {masks}: 1 organ, 2 lesion = the structure protected and "
                      "audited; the lesion differs from the organ by texture, not by mean intensity)", highlight=False)
        cfg = load_protect_config(SHIPPED_CONFIG, images=images, masks=masks, out=out / "protected", seed=seed,
                                  structure_labels=DEMO_LABELS)
        shipped = cfg.method_settings
        cfg = dataclasses.replace(cfg, method_settings={**shipped, **DEMO_OVERRIDES})
        changed = ", ".join(f"{k} {v} (shipped {shipped.get(k)})" for k, v in DEMO_OVERRIDES.items())
        console.print(f"protect settings: the shipped config {SHIPPED_CONFIG!r} except {changed}, for the time budget",
                      highlight=False)
        with progress_callback() as update:
            summary = protect_dataset(cfg, progress=update)
        print_protect_summary(summary, title=f"umed protect (umed, seed {seed}, shipped settings, demo steps)")
        audit_cfg = AuditConfig(clean=images, protected=cfg.out, masks=masks, out=out / "report", seed=seed,
                                structure_labels=DEMO_LABELS, **DEMO_AUDIT)
        with progress_callback() as update:
            report = run_audit(audit_cfg, progress=update)
    except UmedError as error:
        fail(str(error))
        return
    print_audit_report(report)
    print_demo_summary(report, time.perf_counter() - started)


def print_demo_summary(report, seconds: float) -> None:
    """The demo's closing lines: clean vs protected Dice with the verdict per defense, the PSNR, the report."""
    from umed.cli._console import console

    imp = report.imperceptibility
    lines = [f"demo: threshold floor {report.floor.dice:.3f}; PSNR {imp['psnr']:.2f} dB per volume "
             f"(ROI {imp['psnr_roi']:.2f} dB), max change {imp['max_abs_change_255']:.1f}/255"]
    for run in report.runs:
        parts = [f"{rule} {run.clean.dice(rule):.3f} -> {run.protected.dice(rule):.3f}" for rule in ("best", "last", "nnunet")]
        lines.append(f"demo: {run.defense:>8}: Dice clean -> protected: {', '.join(parts)}: {run.verdict}")
    figures = ", ".join(str(p) for k, p in report.paths.items() if k in ("examples", "curves", "dice"))
    lines.append(f"demo: report {report.paths.get('markdown')} (figures: {figures}); {seconds:.0f} s")
    for line in lines:
        console.print(line, highlight=False, soft_wrap=True)
