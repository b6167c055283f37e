"""Write an :class:`umed.audit.AuditReport` to a folder: ``report.json`` (everything), ``report.md`` (for people),
PNG figures and the test predictions.

Files (all written atomically):

- ``report.json``: settings, package versions, split, imperceptibility per case and mean, threshold floor, every
  victim run with per-epoch curves, verdicts, notes.
- ``report.md``: the same in tables, with the verdicts in plain words and the figures.
- ``figures/examples.png`` (figures drawn by :mod:`umed.audit.figures`): three slices: clean image, perturbation
  (diverging colours, colour bar in /255),
  protected image, structure contour.
- ``figures/curves.png``: clean-test Dice per epoch, clean vs protected training (and the clean-half victim of
  ``mix``), the validation Dice EMA and nnU-Net's pick, one panel per victim and defense.
- ``figures/dice.png``: Dice under the three selection rules (oracle best, last, nnU-Net's) by victim and defense,
  with the threshold floor.
- ``predictions.npz``: ``test_labels`` and, per run, ``{victim}__{defense}__{clean|protected}`` last-epoch
  predictions (uint8), so that every reported Dice can be recomputed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from umed.audit.defenses import get_defense
from umed.audit.figures import figure_curves, figure_dice, figure_examples
from umed.audit.records import AuditReport
from umed.audit.verdict import MIX_GAIN_LIMIT
from umed.io.atomic import atomic_file

__all__ = ["write_report"]


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else ("inf" if value > 0 else None)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Path):
        return str(value)
    return value


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return f"{value:.{digits}f}"


def _rules_text(run: Any) -> str:
    """One sentence of a run's Dice under the three rules (and, for ``mix``, the gain over the clean half)."""

    def triple(vr: Any) -> str:
        return (
            f"best {vr.best_dice:.3f} (epoch {vr.best_epoch}), last {vr.last_dice:.3f}, nnU-Net "
            f"{_fmt(vr.dice('nnunet'))} (epoch {vr.epoch('nnunet') or '-'})"
        )

    text = f"trained on protected data: {triple(run.protected)}; trained on clean data: {triple(run.clean)}."
    if run.clean_half is not None:
        gains = ", ".join(f"{rule} {gain:+.3f}" for rule, gain in run.mix_gain.items())
        text += (
            f" Trained on the clean half alone: {triple(run.clean_half)}; Dice gain of the mixed victim over it: "
            f"{gains} (protection means <= {MIX_GAIN_LIMIT})."
        )
    return text


def _markdown(report: AuditReport, figures: dict[str, bool]) -> str:
    """``report.md``: its sections in order."""
    lines = [
        *_md_header(report),
        *_md_verdict(report),
        *_md_imperceptibility(report),
        *_md_victims(report),
        *_md_figures(figures),
        *_md_notes(report),
    ]
    return "\n".join(lines)


def _md_header(report: AuditReport) -> list[str]:
    """Title and the run's inputs, cases, slices and time."""
    cfg = report.config
    shape = "x".join(map(str, report.data.get("slice_shape", [])))
    return [
        "# umed audit",
        "",
        f"- clean: `{cfg.clean}`; protected: `{cfg.protected}`; masks: `{cfg.masks}`",
        f"- training cases ({len(report.train_cases)}): {', '.join(report.train_cases)}",
        f"- test cases ({len(report.test_cases)}, clean images, never trained on): {', '.join(report.test_cases)}",
        f"- structure: {report.data['structure_labels']}; victims: {', '.join(cfg.victims)}; "
        f"defenses: {', '.join(cfg.defenses)}; epochs {cfg.epochs}; seed {cfg.seed}"
        + ("; **quick run** (a smoke test of the pipeline, not a measurement)" if cfg.quick else ""),
        f"- slices: {report.data['train_slices']} training ({report.data['train_structure_slices']} with structure), "
        f"{report.data['test_slices']} test ({report.data['test_structure_slices']} with structure), "
        f"{'native ' + shape if cfg.size is None else f'{cfg.size}x{cfg.size}'} pixels, "
        f"{cfg.empty_ratio:g} empty slice(s) per structure slice",
        f"- run time: {report.seconds / 60:.1f} min",
        "",
    ]


def _md_verdict(report: AuditReport) -> list[str]:
    """The threshold floor, the selection rules and one verdict line per run."""
    floor = report.floor
    validation = ", ".join(report.data.get("validation_cases") or []) or "none"
    lines = [
        "## Verdict",
        "",
        f"Threshold floor: the best single intensity threshold (structure {floor.polarity} {floor.threshold:.3f} "
        f"in normalised units), fitted on the protected training slices, reaches **Dice {floor.dice:.3f}** on the "
        f"clean test slices. A victim trained on protected data that scores at or above it is not protected beyond "
        f"what a threshold finds.",
        "",
        "Three model-selection rules: **best** = the epoch with the best clean-test Dice (an oracle: the attacker's "
        "best case), **last** = the final epoch, **nnU-Net** = nnU-Net's `checkpoint_best`, the best EMA "
        f"(0.9/0.1) of the Dice on the validation cases ({validation}"
        "; protected for the protected victim, held out from fitting). The verdict considers all three.",
        "",
    ]
    for run in report.runs:
        lines.append(f"- **{run.victim} / {run.defense}**: {_rules_text(run)} **{run.verdict}**.{_mark_text(run)}")
    return lines


def _mark_text(run: Any) -> str:
    """The mark test of both victims (``umed audit --key``), or nothing."""
    tests = [(kind, vr.details.get("verify")) for kind, vr in (("clean", run.clean), ("protected", run.protected))]
    if all(test is None for _, test in tests):
        return ""
    parts = [
        f"{kind} victim p = {test['p_soft']:.3g} (hard masks {test['p_hard']:.3g})"
        for kind, test in tests
        if test is not None
    ]
    return " Mark test (umed verify, last epoch): " + "; ".join(parts) + "."


def _md_imperceptibility(report: AuditReport) -> list[str]:
    """The imperceptibility table: one row per case and the means."""
    imp = report.imperceptibility
    lines = [
        "",
        "## Imperceptibility",
        "",
        f"Normalised units (data range 1): {report.data['intensity']}. ROI = {report.data['roi']}. "
        "PSNR per volume (3D) or per image (2D); changes in /255 of the data range.",
        "",
        "| case | role | PSNR dB | ROI PSNR dB | SSIM | max change /255 | max change outside ROI /255 "
        "| changed voxels |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in report.cases:
        lines.append(
            f"| {c.case_id} | {c.role} | {_fmt(c.psnr, 2)} | {_fmt(c.psnr_roi, 2)} | {_fmt(c.ssim, 4)} | "
            f"{_fmt(c.max_abs_change_255, 2)} | {_fmt(c.max_abs_change_outside_roi_255, 2)} | "
            f"{100 * c.changed_fraction:.2f}% |"
        )
    lines.append(
        f"| **mean** (max for changes) | | {_fmt(imp['psnr'], 2)} | {_fmt(imp['psnr_roi'], 2)} | "
        f"{_fmt(imp['ssim'], 4)} | "
        f"{_fmt(imp['max_abs_change_255'], 2)} | {_fmt(imp['max_abs_change_outside_roi_255'], 2)} | "
        f"{100 * imp['changed_fraction']:.2f}% |"
    )
    return lines


def _md_victims(report: AuditReport) -> list[str]:
    """The victims table, the per-label Dice, the defenses and the clean-fitted threshold."""
    lines = [
        "",
        "## Victims",
        "",
        "Clean-test Dice of the structure over all test slices jointly; best = the best epoch (oracle early stopping), "
        "last = after the last epoch, nnU-Net = nnU-Net's checkpoint_best (validation EMA). HD95 in mm (per test "
        "slice with structure, averaged; a slice where the victim finds "
        "nothing counts as the slice diagonal).",
        "",
        "| victim | defense | trained on | best (epoch) | last | nnU-Net (epoch) | HD95 last | verdict |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for run in report.runs:
        kinds = [("clean", run.clean), ("protected", run.protected)]
        if run.clean_half is not None:
            kinds.append(("clean half alone", run.clean_half))
        for k, (kind, vr) in enumerate(kinds):
            lines.append(
                f"| {run.victim if k == 0 else ''} | {run.defense if k == 0 else ''} | {kind} | "
                f"{vr.best_dice:.3f} ({vr.best_epoch}) | {vr.last_dice:.3f} | {_fmt(vr.dice('nnunet'))} "
                f"({vr.epoch('nnunet') or '-'}) | {_fmt(vr.last_hd95, 1)} | {run.verdict if k == 0 else ''} |"
            )
    per_label = [r for r in report.runs if r.protected.dice_per_label]
    if per_label:
        lines += ["", "Per-label Dice (last epoch; the victim segments the union, other structure labels ignored):", ""]
        for run in per_label:
            clean = ", ".join(f"{k}: {v:.3f}" for k, v in run.clean.dice_per_label.items())
            prot = ", ".join(f"{k}: {v:.3f}" for k, v in run.protected.dice_per_label.items())
            lines.append(f"- {run.victim} / {run.defense}: clean {{{clean}}}; protected {{{prot}}}")
    lines += ["", "Defenses:", ""]
    for name in report.config.defenses:
        lines.append(f"- `{name}`: {get_defense(name).summary}")
    lines += [
        "",
        f"Threshold fitted on clean training slices instead: Dice {report.floor_clean.dice:.3f} "
        f"({report.floor_clean.polarity} {report.floor_clean.threshold:.3f}).",
        "",
    ]
    return lines


def _md_figures(figures: dict[str, bool]) -> list[str]:
    """The figures written, each with its caption."""
    lines = ["## Figures", ""]
    if figures.get("examples"):
        lines += [
            "Clean, perturbation (amplified), protected and structure contour:",
            "",
            "![examples](figures/examples.png)",
            "",
        ]
    if figures.get("curves"):
        lines += [
            "Learning curves (clean-test Dice per epoch, training loss dashed):",
            "",
            "![curves](figures/curves.png)",
            "",
        ]
    if figures.get("dice"):
        lines += ["Dice by victim and defense:", "", "![dice](figures/dice.png)", ""]
    return lines


def _md_notes(report: AuditReport) -> list[str]:
    """Resampling, the Dice policy, the run's notes and the versions."""
    if report.config.size is not None:
        resampling = (
            " Averaging attenuates fine perturbation patterns when slices are larger than the victim's size; the "
            "default native resolution is the stricter test."
        )
    else:
        resampling = " Training on resampled slices is measured by the `downsample` defense."
    lines = [
        "## Notes",
        "",
        f"- {report.data['resampling']}." + resampling,
        "- Dice policy: an empty prediction against an empty target counts 1, otherwise the usual 2|P&T|/(|P|+|T|), "
        "over all test slices jointly.",
    ]
    lines += [f"- {note}" for note in report.notes]
    lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in report.versions.items()), ""]
    return lines


def write_report(report: AuditReport, out_dir: Path) -> dict[str, Path]:
    """Write ``report.json``, ``report.md``, ``figures/*.png`` and ``predictions.npz`` into ``out_dir``.

    Args:
        report: from :func:`umed.audit.run_audit`.
        out_dir: the report folder (created if needed).

    Returns:
        ``{"json", "markdown", "predictions", "examples", "curves", "dice"}`` paths of the files written (a figure
        without data is left out); also stored in ``report.paths``.

    Raises:
        OutputError: a file cannot be written.
    """
    out_dir = Path(out_dir)
    figures_dir = out_dir / "figures"
    paths: dict[str, Path] = {}
    made = {
        "examples": figure_examples(report, figures_dir / "examples.png"),
        "curves": figure_curves(report, figures_dir / "curves.png"),
        "dice": figure_dice(report, figures_dir / "dice.png"),
    }
    for name, ok in made.items():
        if ok:
            paths[name] = figures_dir / f"{name}.png"

    arrays: dict[str, Any] = {"test_labels": report.test_labels}  # Any: numpy types savez keywords as ArrayLike | bool
    if report.test_labels_3d is not None:
        arrays["test_labels_3d"] = report.test_labels_3d
    for run in report.runs:
        for kind in ("clean", "protected"):
            arrays[f"{run.victim}__{run.defense}__{kind}"] = getattr(run, kind).predictions
    paths["predictions"] = out_dir / "predictions.npz"
    with atomic_file(paths["predictions"]) as temp:
        with open(temp, "wb") as handle:
            np.savez_compressed(handle, **arrays)

    document = _json_safe(report.to_dict())
    paths["json"] = out_dir / "report.json"
    paths["markdown"] = out_dir / "report.md"
    document["files"] = {k: str(v.relative_to(out_dir)) for k, v in paths.items()}
    with atomic_file(paths["json"]) as temp:
        temp.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    with atomic_file(paths["markdown"]) as temp:
        temp.write_text(_markdown(report, made), encoding="utf-8")
    report.paths = dict(paths)
    return paths
