"""``umed demo``: the whole job on synthetic phantoms (:func:`umed.demo.run_demo`), printed."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from umed.cli import app
from umed.cli._console import user_errors

if TYPE_CHECKING:
    from umed.demo import DemoResult

_OUT = typer.Option("--out", "-o", help="Folder for the phantoms, the protected copy and the report.")


@app.command("demo")
def demo(
    out: Annotated[Path, _OUT] = Path("umed-demo"),
    seed: Annotated[int, typer.Option("--seed", help="Seed of the phantoms, the protector and the audit.")] = 0,
) -> None:
    """Make 8 synthetic 3D phantoms (NIfTI) whose lesion differs from its organ by texture, protect them with the
    shipped UMed settings (fewer steps; the protector is fitted on the 6 training phantoms), and audit: a UNet trained
    on clean vs on protected phantoms, with and without a Gaussian blur, scored on the 2 clean test phantoms under
    three model-selection rules.

    The phantoms are not real data: the demo shows the pipeline and what the audit measures, not how well a real
    dataset is protected (see the README's results for that).
    """
    from umed.cli._console import console, progress_callback
    from umed.cli.audit import print_audit_report
    from umed.cli.protect import print_protect_summary
    from umed.demo import DEMO_OVERRIDES, SHIPPED_CONFIG, run_demo

    changed = ", ".join(f"{key} {value}" for key, value in DEMO_OVERRIDES.items())
    console.print(
        f"demo: phantoms in {out / 'phantoms'}; protect settings: the shipped config {SHIPPED_CONFIG!r} "
        f"(where a protector is fitted: {changed}, for the 2-minute budget)",
        highlight=False,
        soft_wrap=True,
    )
    with user_errors():
        with progress_callback() as update:
            result = run_demo(
                out,
                seed=seed,
                progress=update,
                on_protected=lambda summary: print_protect_summary(
                    summary, title=f"umed protect (config {SHIPPED_CONFIG}, seed {seed}, demo steps)"
                ),
            )
    print_audit_report(result.audit)
    print_demo_summary(result)


def _verdict(test: dict) -> str:
    from umed.verify import ALPHA

    smallest = 1 / (test["controls"] + 1)
    where = f"p = {test['p_soft']:.3g} (hard masks {test['p_hard']:.3g}; smallest possible {smallest:.3g})"
    if test["p_soft"] <= ALPHA:
        return f"trained on data marked with this key: {where}"
    return f"no evidence at level {ALPHA:g}: {where}"


def print_demo_summary(result: DemoResult) -> None:
    """The demo's closing lines: settings, clean vs protected Dice with the verdict per defense, PSNR, the report."""
    from umed.cli._console import console
    from umed.demo import SHIPPED_CONFIG

    report = result.audit
    imp = report.imperceptibility
    changed = ", ".join(f"{key} {demo} (shipped {shipped})" for key, (demo, shipped) in result.overrides.items())
    fitted = (
        f"protector fitted on {len(result.fit_cases)} training phantoms, applied to all"
        if result.protect.protector_path is not None
        else "the shipped keyed mark takes the whole budget (nothing fitted)"
    )
    lines = [
        f"demo: {fitted}; shipped config {SHIPPED_CONFIG!r}"
        + (f" except {changed}" if result.protect.protector_path is not None else ""),
        f"demo: threshold floor {report.floor.dice:.3f}; PSNR {imp['psnr']:.2f} dB per volume "
        f"(ROI {imp['psnr_roi']:.2f} dB), max change {imp['max_abs_change_255']:.1f}/255",
    ]
    for run in report.runs:
        rules = ("best", "last", "nnunet")
        parts = [f"{rule} {run.clean.dice(rule):.3f} -> {run.protected.dice(rule):.3f}" for rule in rules]
        lines.append(f"demo: {run.defense:>8}: Dice clean -> protected: {', '.join(parts)}: {run.verdict}")
        for kind, victim_run in (("protected", run.protected), ("clean", run.clean)):
            test = victim_run.details.get("verify")
            if test is not None:
                lines.append(f"demo: {run.defense:>8}: mark test, victim trained on {kind} data: {_verdict(test)}")
    figures = ", ".join(str(p) for k, p in report.paths.items() if k in ("examples", "curves", "dice"))
    lines.append(f"demo: report {report.paths.get('markdown')} (figures: {figures}); {result.seconds:.0f} s")
    for line in lines:
        console.print(line, highlight=False, soft_wrap=True)
