"""``umed demo``: the whole job on an embedded synthetic dataset, with no download: make phantoms, protect, audit."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from umed.cli import app

#: Settings small enough for a CPU laptop in about a minute; the real defaults live in configs/.
DEMO_UMED_SETTINGS = {"steps": 40, "base_channels": 8, "crop": 64, "batch_size": 4, "saturation": 1.0}


@app.command("demo")
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the phantoms, the protected copy and the report.")] = Path("umed-demo"),
    seed: Annotated[int, typer.Option("--seed", help="Seed of the phantoms, the protector and the audit.")] = 0,
) -> None:
    """Make 6 synthetic 3D phantoms (NIfTI), protect them with UMed and print the quick audit table.

    The phantoms are not real data: the demo shows the pipeline end to end, not how well a real dataset is protected
    (see the README's benchmark section for that).
    """
    from umed.audit import AuditConfig, run_audit
    from umed.cli._console import console, fail, progress_callback
    from umed.cli.audit import print_audit_report
    from umed.cli.protect import print_protect_summary
    from umed.errors import UmedError
    from umed.phantom import make_phantom_dataset
    from umed.protect import protect_dataset
    from umed.settings import ProtectConfig

    try:
        images, masks = make_phantom_dataset(out / "phantoms", n_cases=6, ndim=3, shape=(64, 64, 24), seed=seed)
        console.print(f"phantoms: {images} (images), {masks} (labels 1 organ, 2 lesion)", highlight=False)
        cfg = ProtectConfig(
            images=images,
            masks=masks,
            out=out / "protected",
            method="umed",
            seed=seed,
            target_psnr=50.0,
            method_settings=DEMO_UMED_SETTINGS,
        )
        with progress_callback() as update:
            summary = protect_dataset(cfg, progress=update)
        print_protect_summary(summary, title=f"umed protect (umed, seed {seed}, demo settings)")
        audit_cfg = AuditConfig(
            clean=images, protected=cfg.out, masks=masks, out=out / "report", seed=seed, quick=True
        )
        with progress_callback() as update:
            report = run_audit(audit_cfg, progress=update)
    except UmedError as error:
        fail(str(error))
        return
    print_audit_report(report)
