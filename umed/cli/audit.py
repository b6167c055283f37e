"""``umed audit``: train victims on protected and on clean data and report (thin shell over :func:`umed.audit.run_audit`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from umed.cli import app
from umed.cli._console import parse_labels, parse_names


def _short_verdicts() -> dict[str, str]:
    from umed.audit import INCONCLUSIVE, NOT_PROTECTED, PROTECTED

    return {NOT_PROTECTED: "NOT protected", PROTECTED: "protected", INCONCLUSIVE: "inconclusive"}


@app.command("audit")
def audit(
    clean: Annotated[Path, typer.Option("--clean", help="Folder of the clean images.")],
    protected: Annotated[Path, typer.Option("--protected", help="Folder of the protected images (same case names).")],
    masks: Annotated[Optional[Path], typer.Option("--masks", "-m", help="Folder of label maps, paired by case name.")] = None,
    test_cases: Annotated[Optional[str], typer.Option("--test-cases", help="Comma-separated case ids held out for testing.")] = None,
    split: Annotated[Optional[float], typer.Option("--split", help="Fraction of cases held out for testing, drawn with the seed (default 0.33).")] = None,
    victims: Annotated[str, typer.Option("--victims", help="unet, basicunet, segresnet, attentionunet, unet3d (comma-separated).")] = "unet",
    defenses: Annotated[str, typer.Option("--defenses", help="none, adversarial, jpeg, quantize, gaussian, median, augment, intensity, downsample, mix (comma-separated).")] = "none",
    labels: Annotated[Optional[str], typer.Option("--labels", help="Labels forming the structure, e.g. 1,3,4 (default: every label > 0).")] = None,
    epochs: Annotated[int, typer.Option("--epochs", help="Training epochs per victim run.")] = 15,
    size: Annotated[Optional[int], typer.Option("--size", help="Resample slices to SIZE x SIZE (multiple of 16); default: native resolution, training on --crop patches.")] = None,
    crop: Annotated[int, typer.Option("--crop", help="Training patch side at native resolution (pixels).")] = 128,
    empty_ratio: Annotated[float, typer.Option("--empty-ratio", help="Slices without structure per slice with it.")] = 1.0,
    quick: Annotated[bool, typer.Option("--quick", help="Smoke run: size 64, 3 epochs, first victim only.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Run seed (split, slices, every victim run).")] = 0,
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder (report.md, report.json, figures).")] = Path("umed-audit"),
) -> None:
    """Train each victim on the protected and on the clean training cases, score both on clean test cases, and write
    a report with imperceptibility, the threshold floor, Dice/HD95 and learning curves."""
    from umed.audit import AuditConfig, run_audit
    from umed.cli._console import fail, progress_callback
    from umed.errors import UmedError

    try:
        cfg = AuditConfig(
            clean=clean,
            protected=protected,
            masks=masks,
            out=out,
            test_cases=parse_names(test_cases),
            split=split,
            structure_labels=parse_labels(labels),
            victims=parse_names(victims),
            defenses=parse_names(defenses),
            epochs=epochs,
            size=size,
            crop=crop,
            empty_ratio=empty_ratio,
            seed=seed,
            quick=quick,
        )
        with progress_callback() as update:
            report = run_audit(cfg, progress=update)
    except UmedError as error:
        fail(str(error))
        return

    print_audit_report(report, out)


def print_audit_report(report, out: Path | None = None) -> None:
    """Print the audit's summary lines and its table of clean-test Dice (clean vs protected victims, verdict)."""
    from rich.table import Table

    from umed.audit import NOT_PROTECTED
    from umed.cli._console import console

    short = _short_verdicts()
    imp = report.imperceptibility
    for line in (
        f"train: {', '.join(report.train_cases)}",
        f"test: {', '.join(report.test_cases)}",
        f"PSNR {imp['psnr']:.2f} dB, ROI PSNR {imp['psnr_roi']:.2f} dB, SSIM {imp['ssim']:.4f}, "
        f"max |change| {imp['max_abs_change_255']:.2f}/255",
        f"threshold floor: Dice {report.floor.dice:.3f} ({report.floor.polarity} {report.floor.threshold:.3f})",
    ):
        console.print(line, highlight=False, soft_wrap=True)
    table = Table(title=f"umed audit: clean-test Dice (seed {report.config.seed}, {report.config.epochs} epochs, "
                        f"{'native resolution' if report.config.size is None else f'size {report.config.size}'})")
    for column in ("victim", "defense", "clean best/last", "prot. best/last", "verdict"):
        table.add_column(column, justify="right" if "/" in column else "left", no_wrap=True)
    for run in report.runs:
        table.add_row(
            run.victim,
            run.defense,
            f"{run.clean.best_dice:.3f}/{run.clean.last_dice:.3f}",
            f"{run.protected.best_dice:.3f}/{run.protected.last_dice:.3f}",
            short.get(run.verdict, run.verdict),
        )
    console.print(table)
    console.print(
        f"verdict: best-epoch Dice of the victim trained on protected data vs the threshold floor "
        f"{report.floor.dice:.3f}; NOT protected = at or above it ({NOT_PROTECTED}); inconclusive = the victim "
        "trained on clean data is below it too (train longer)",
        highlight=False,
        soft_wrap=True,
    )
    console.print(f"report: {report.paths.get('markdown', out / 'report.md') if out else report.paths.get('markdown')}", highlight=False, soft_wrap=True)
