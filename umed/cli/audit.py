"""``umed audit``: train victims on protected and on clean data and report (a thin shell over
:func:`umed.audit.run_audit`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from umed.audit.config import shipped_defaults
from umed.audit.defenses import DEFENSE_NAMES
from umed.audit.victims import VICTIM_NAMES
from umed.cli import app
from umed.cli._console import parse_labels, parse_names, user_errors

_D = shipped_defaults()  # the help shows the defaults AuditConfig reads from configs/audit.yaml


# the options' types and help, kept out of the command's signature (help defaults read from configs/audit.yaml)
_Split = Annotated[
    float | None,
    typer.Option(
        "--split", help=f"Fraction of cases held out for testing, drawn with the seed (default {_D['default_split']})."
    ),
]
_Victims = Annotated[
    str | None,
    typer.Option(
        "--victims", help=f"Comma-separated, from: {', '.join(VICTIM_NAMES)} (default: {', '.join(_D['victims'])})."
    ),
]
_Defenses = Annotated[
    str | None,
    typer.Option(
        "--defenses", help=f"Comma-separated, from: {', '.join(DEFENSE_NAMES)} (default: {', '.join(_D['defenses'])})."
    ),
]
_Labels = Annotated[
    str | None, typer.Option("--labels", help="Labels forming the structure, e.g. 1,3,4 (default: every label > 0).")
]
_Epochs = Annotated[
    int | None, typer.Option("--epochs", help=f"Training epochs per victim run (default {_D['epochs']}).")
]
_Size = Annotated[
    int | None,
    typer.Option(
        "--size",
        help="Resample slices to SIZE x SIZE (multiple of 16); default: native resolution, training on --crop patches.",
    ),
]
_Crop = Annotated[
    int | None, typer.Option("--crop", help=f"Training patch side at native resolution (pixels; default {_D['crop']}).")
]
_EmptyRatio = Annotated[
    float | None,
    typer.Option("--empty-ratio", help=f"Slices without structure per slice with it (default {_D['empty_ratio']:g})."),
]
_Quick = Annotated[bool | None, typer.Option("--quick", help="Smoke run: size 64, 3 epochs, first victim only.")]
_Seed = Annotated[
    int | None, typer.Option("--seed", help=f"Run seed (split, slices, every victim run; default {_D['seed']}).")
]
_Out = Annotated[Path, typer.Option("--out", "-o", help="Report folder (report.md, report.json, figures).")]


@app.command("audit")
def audit(
    clean: Annotated[Path, typer.Option("--clean", help="Folder of the clean images.")],
    protected: Annotated[Path, typer.Option("--protected", help="Folder of the protected images (same case names).")],
    masks: Annotated[
        Path | None, typer.Option("--masks", "-m", help="Folder of label maps, paired by case name.")
    ] = None,
    test_cases: Annotated[
        str | None, typer.Option("--test-cases", help="Comma-separated case ids held out for testing.")
    ] = None,
    split: _Split = None,
    victims: _Victims = None,
    defenses: _Defenses = None,
    labels: _Labels = None,
    epochs: _Epochs = None,
    size: _Size = None,
    crop: _Crop = None,
    empty_ratio: _EmptyRatio = None,
    quick: _Quick = None,
    seed: _Seed = None,
    out: _Out = Path("umed-audit"),
    key: Annotated[
        Path | None,
        typer.Option("--key", help="The umed verify key of the protected folder: also test every victim for the mark."),
    ] = None,
) -> None:
    """Train each victim on the protected and on the clean training cases, score both on clean test cases, and write
    a report with imperceptibility, the threshold floor, Dice/HD95 and learning curves."""
    from umed.audit import AuditConfig, run_audit
    from umed.cli._console import progress_callback

    with user_errors():
        given: dict[str, Any] = dict(
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
            key=key,
        )
        cfg = AuditConfig(
            clean=clean, protected=protected, masks=masks, out=out, **{k: v for k, v in given.items() if v is not None}
        )  # unset options: AuditConfig's defaults
        with progress_callback() as update:
            report = run_audit(cfg, progress=update)

    print_audit_report(report, out)


def print_audit_report(report, out: Path | None = None) -> None:
    """Print the audit's summary lines and its table of clean-test Dice under the three selection rules (clean vs
    protected victims, the clean-half victim for ``mix``, verdict)."""
    from rich.table import Table

    from umed.audit.verdict import MIX_GAIN_LIMIT, SHORT
    from umed.cli._console import console

    imp = report.imperceptibility
    validation = ", ".join(report.data.get("validation_cases") or []) or "none"
    for line in (
        f"train: {', '.join(report.train_cases)} (nnU-Net validation: {validation})",
        f"test: {', '.join(report.test_cases)}",
        f"PSNR {imp['psnr']:.2f} dB, ROI PSNR {imp['psnr_roi']:.2f} dB, SSIM {imp['ssim']:.4f}, "
        f"max |change| {imp['max_abs_change_255']:.2f}/255",
        f"threshold floor: Dice {report.floor.dice:.3f} ({report.floor.polarity} {report.floor.threshold:.3f})",
    ):
        console.print(line, highlight=False, soft_wrap=True)
    table = Table(
        title=f"umed audit: clean-test Dice best/last/nnU-Net (seed {report.config.seed}, "
        f"{report.config.epochs} epochs, "
        f"{'native resolution' if report.config.size is None else f'size {report.config.size}'})"
    )
    verified = any("verify" in run.protected.details for run in report.runs)
    columns = ["victim", "defense", "clean", "protected", "clean half", "verdict"]
    columns += ["mark p: clean", "mark p: protected"] if verified else []
    for column in columns:
        table.add_column(
            column, justify="left" if column in ("victim", "defense", "verdict") else "right", no_wrap=True
        )
    for run in report.runs:
        row = [run.victim, run.defense, _triple(run.clean), _triple(run.protected)]
        row += [_triple(run.clean_half) if run.clean_half is not None else "-", SHORT.get(run.verdict, run.verdict)]
        table.add_row(*row, *([_mark_p(run.clean), _mark_p(run.protected)] if verified else []))
    console.print(table)
    if verified:
        console.print(
            "mark p: the key's rank test (umed verify) on the victim's last model, probabilities / hard masks; "
            "exact under the null: p <= 0.01 says 'trained on data marked with this key'",
            highlight=False,
            soft_wrap=True,
        )
    console.print(
        f"verdict: the victim trained on protected data vs the threshold floor {report.floor.dice:.3f} under the three "
        "selection rules (best = oracle epoch on the clean test set, last epoch, nnU-Net's best validation EMA): "
        "NOT protected = at or above it under every rule, partly = under some; inconclusive = the clean victim is "
        f"below it too (train longer); mix: protected when the protected half adds <= {MIX_GAIN_LIMIT} Dice over "
        "the clean half alone",
        highlight=False,
        soft_wrap=True,
    )
    where = report.paths.get("markdown") or (out / "report.md" if out else None)
    console.print(f"report: {where}", highlight=False, soft_wrap=True)


def _mark_p(run) -> str:
    test = run.details.get("verify")
    return "-" if test is None else f"{test['p_soft']:.3g} / {test['p_hard']:.3g}"


def _triple(run) -> str:
    return "/".join("-" if v != v else f"{v:.3f}" for v in (run.dice("best"), run.dice("last"), run.dice("nnunet")))
