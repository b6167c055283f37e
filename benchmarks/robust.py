"""Issue 14's tables and trade-off figure, from the efficacy results that `bash benchmarks/run_all.sh robust` writes.

Usage::

    python benchmarks/robust.py            # print the tables (Markdown), write results/robust_summary.json
                                           # and results/figures/tradeoff.png

Reads (benchmarks/results/):

- ``efficacy_brats_core_umed_tradeoff_psnr<P>[_<more>].json``: the shipped UMed settings at P dB per volume (L-inf
  cap 24/255 at 50 dB and above, lifted below), UNet under none / augment / downsample / gaussian: the trade-off
  curve (a second file at the same P, e.g. ``_filters``, adds defenses run later on the same protection);
- ``efficacy_brats_core_umed_robust50_*.json``: more victims and defenses on the 50 dB protection;
- ``efficacy_brats_core_umed_ablation_*.json``: the generator ablation (prior alone, trained with EOT); the trained
  generators are the 50 dB point of the curve.

Targets: ``benchmarks/robust_targets.yaml`` (ratios protected / clean Dice per selection rule). Ratios use the clean
victim of the same run (same defense, same selection rule).
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BENCHMARKS, RESULTS, RUNS, TASKS, write_result  # noqa: E402
from summarize import _imperceptibility  # noqa: E402

TARGETS = BENCHMARKS / "robust_targets.yaml"
CURVE_DEFENSES = ("none", "augment", "downsample", "gaussian")
RULES = ("best", "last", "nnunet")
# Attackers not yet run under the validation-fold protocol: the earlier protocol's result (every training case, no
# validation fold, 4 training cases; best and last only), shown as such in the targets table.
EARLIER = {
    ("unet", "median"): "noclip_defenses",
    ("unet", "jpeg"): "noclip_defenses2",
    ("unet3d", "none"): "noclip_unet3d",
}
ABLATION = (
    ("fixed prior alone (steps 0)", "ablation_prior"),
    ("trained generators (shipped)", "tradeoff_psnr50"),
    ("trained with EOT over the attacker's transforms", "ablation_eot"),
)


@dataclass(frozen=True)
class Point:
    """One victim run: protected and clean Dice under the three selection rules, and the protection's PSNR."""

    tag: str
    victim: str
    defense: str
    psnr_min: float
    psnr_roi_mean: float
    linf_max_255: float
    audit_seed: int
    protected: dict[str, float | None]
    clean: dict[str, float | None]
    mix_gain: dict[str, float] | None

    def ratio(self, rule: str) -> float | None:
        p, c = self.protected.get(rule), self.clean.get(rule)
        return None if p is None or c is None else p / max(c, 1e-9)


def _points(tag: str) -> list[Point]:
    path = RESULTS / f"efficacy_brats_core_umed_{tag}.json"
    if not path.exists():
        return []
    doc = json.loads(path.read_text())
    psnr_min, _, roi_mean, _, _ = _imperceptibility(doc)
    linf_max = max(c["max_abs_change_255"] for c in doc["train_cases"].values())
    out = []
    for run in doc["runs"]:
        out.append(
            Point(
                tag=tag,
                victim=run["victim"],
                defense=run["defense"],
                psnr_min=psnr_min,
                psnr_roi_mean=roi_mean,
                linf_max_255=linf_max,
                audit_seed=int(doc.get("audit_seed", doc.get("seed", 0))),
                protected={r: run.get(f"protected_{r}") for r in RULES},
                clean={r: run.get(f"clean_{r}") for r in RULES},
                mix_gain=run.get("mix_gain"),
            )
        )
    return out


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def tag_psnr(name: str) -> float:
    """The target dB per volume in a trade-off tag or folder name.

    >>> tag_psnr("tradeoff_psnr45_filters"), tag_psnr("efficacy_brats_core_umed_tradeoff_psnr50")
    (45.0, 50.0)
    """
    return float(re.search(r"tradeoff_psnr(\d+(?:\.\d+)?)", name).group(1))  # type: ignore[union-attr]


def _by_psnr(points: list[Point]) -> list[dict[str, Point]]:
    """The curve's runs grouped per PSNR (highest first), each group keyed by defense."""
    levels = sorted({tag_psnr(p.tag) for p in points}, reverse=True)
    return [{p.defense: p for p in points if tag_psnr(p.tag) == level} for level in levels]


def _cell(point: Point | None) -> str:
    if point is None:
        return "not run"
    p, c = point.protected, point.clean
    return (
        f"{_fmt(p['best'], 3)} / {_fmt(p['last'], 3)} / {_fmt(p['nnunet'], 3)} "
        f"(clean {_fmt(c['best'], 3)} / {_fmt(c['last'], 3)} / {_fmt(c['nnunet'], 3)})"
    )


def curve() -> tuple[list[str], list[Point]]:
    """The trade-off table: one row per PSNR, one column per defense (UNet)."""
    points = []
    for path in sorted(RESULTS.glob("efficacy_brats_core_umed_tradeoff_psnr*.json")):
        points += [p for p in _points(path.stem.split("umed_")[1]) if p.victim == "unet"]
    lines = [
        "| dB per volume (min) | ROI PSNR dB (mean) | L-inf max /255 | "
        + " | ".join(f"{d}: protected best / last / nnU-Net (clean)" for d in CURVE_DEFENSES)
        + " |",
        "|---|---|---|" + "---|" * len(CURVE_DEFENSES),
    ]
    for by_defense in _by_psnr(points):
        first = next(iter(by_defense.values()))
        lines.append(
            f"| {first.psnr_min:.1f} | {first.psnr_roi_mean:.1f} | {first.linf_max_255:.1f} | "
            + " | ".join(_cell(by_defense.get(d)) for d in CURVE_DEFENSES)
            + " |"
        )
    return lines, points


def _measure(point: Point, selection: str) -> tuple[float | None, str]:
    """The target's value for one run and the Dice behind it."""
    if selection == "gain":
        if not point.mix_gain:
            return None, ""
        gains = " / ".join(f"{rule} {point.mix_gain[rule]:+.2f}" for rule in RULES if rule in point.mix_gain)
        return max(point.mix_gain.values()), f" (the largest of {gains})"
    p, c = point.protected.get(selection), point.clean.get(selection)
    return point.ratio(selection), "" if p is None or c is None else f" ({p:.3f} / {c:.3f})"


def curve_ratios(points: list[Point]) -> list[str]:
    """The trade-off as ratios (protected / clean Dice, oracle best / last epoch), one row per PSNR: the README's."""
    lines = [
        "| dB per volume | ROI PSNR dB | L-inf max /255 | " + " | ".join(CURVE_DEFENSES) + " |",
        "|---|---|---|" + "---|" * len(CURVE_DEFENSES),
    ]
    for row in _by_psnr(points):
        first = next(iter(row.values()))
        cells = [
            "not run" if d not in row else f"{_fmt(row[d].ratio('best'))} / {_fmt(row[d].ratio('last'))}"
            for d in CURVE_DEFENSES
        ]
        head = f"| {first.psnr_min:.0f} | {first.psnr_roi_mean:.1f} | {first.linf_max_255:.0f} | "
        lines.append(head + " | ".join(cells) + " |")
    return lines


def _at50(point: Point) -> bool:
    """A run on the shipped 50 dB protection (the curve's 50 dB point or one of the robust50_* runs)."""
    return point.tag == "tradeoff_psnr50" or point.tag.startswith("robust50_")


def targets(points: list[Point]) -> tuple[list[str], list[dict]]:
    """Every target of robust_targets.yaml against the shipped settings at 50 dB: met or missed, and by how much."""
    from umed.audit.verdict import MIX_GAIN_LIMIT

    at50 = {(p.victim, p.defense): p for p in points if _at50(p) and p.audit_seed == 0}
    lines = [
        "| victim | defense | selection | goal | measured (protected / clean Dice) | verdict |",
        "|---|---|---|---|---|---|",
    ]
    record = []
    for target in yaml.safe_load(TARGETS.read_text()):
        goal = target.get("goal", MIX_GAIN_LIMIT)
        key = (target["victim"], target["defense"])
        point, protocol = at50.get(key), "validation fold"
        if point is None and key in EARLIER:
            point = next((p for p in _points(EARLIER[key]) if (p.victim, p.defense) == key), None)
            protocol = "earlier protocol (no validation fold)"
        value, dice = _measure(point, target["selection"]) if point is not None else (None, "")
        if value is None:
            verdict = "not measured"
        else:
            verdict = ("met" if value <= goal else f"missed by {value - goal:.2f}") + (
                "" if protocol == "validation fold" else f", {protocol}"
            )
        unit = "gain" if target["selection"] == "gain" else "ratio"
        lines.append(
            f"| {target['victim']} | {target['defense']} | {target['selection']} | {unit} <= {goal:g} | "
            f"{_fmt(value)}{dice} | {verdict} |"
        )
        record.append({**target, "goal": goal, "measured": value, "verdict": verdict, "protocol": protocol})
    return lines, record


def seeds(points: list[Point]) -> tuple[list[str], list[dict]]:
    """The 50 dB runs measured with more than one audit seed (split, slices, victims' initialisation): ratios per
    seed, so a reader sees one run's spread."""
    at50 = [p for p in points if _at50(p)]
    keys = sorted({(p.victim, p.defense) for p in at50 if p.audit_seed != 0})
    lines = [
        "| victim | defense | audit seed | clean best / last / nnU-Net | protected best / last / nnU-Net "
        "| ratio best / last |",
        "|---|---|---|---|---|---|",
    ]
    record = []
    for key in keys:
        for p in sorted((p for p in at50 if (p.victim, p.defense) == key), key=lambda p: p.audit_seed):
            c, q = p.clean, p.protected
            lines.append(
                f"| {p.victim} | {p.defense} | {p.audit_seed} | "
                + " / ".join(_fmt(c[r], 3) for r in RULES)
                + " | "
                + " / ".join(_fmt(q[r], 3) for r in RULES)
                + f" | {_fmt(p.ratio('best'))} / {_fmt(p.ratio('last'))} |"
            )
            record.append(
                {
                    "victim": p.victim,
                    "defense": p.defense,
                    "audit_seed": p.audit_seed,
                    "tag": p.tag,
                    "ratio": {r: p.ratio(r) for r in RULES},
                }
            )
    return lines, record


def ablation() -> tuple[list[str], list[dict]]:
    """Prior alone / trained / trained with EOT, under every defense measured for all three (UNet, 50 dB)."""
    runs = {label: {p.defense: p for p in _points(tag) if p.victim == "unet"} for label, tag in ABLATION}
    lines = [
        "| generators | " + " | ".join(f"{d}: best / last / nnU-Net ratio" for d in CURVE_DEFENSES) + " |",
        "|---|" + "---|" * len(CURVE_DEFENSES),
    ]
    record = []
    for label, by_defense in runs.items():
        cells = []
        for d in CURVE_DEFENSES:
            p = by_defense.get(d)
            cells.append("not run" if p is None else " / ".join(_fmt(p.ratio(r)) for r in RULES))
            if p is not None:
                record.append({"generators": label, "defense": d, **{r: p.ratio(r) for r in RULES}})
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines, record


def figure(points: list[Point], path: Path) -> None:
    """Protected / clean Dice against PSNR, one colour per defense; solid oracle best, dashed last epoch (nnU-Net's
    rule is in the table: with one validation case its clean pick is too noisy for a ratio: 0.116 under augment)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for defense, colour in zip(CURVE_DEFENSES, ("k", "tab:blue", "tab:orange", "tab:green")):
        row = sorted((p for p in points if p.defense == defense), key=lambda p: p.psnr_min)
        if not row:
            continue
        x = [p.psnr_min for p in row]
        ax.plot(x, [p.ratio("best") for p in row], "-o", color=colour, label=f"{defense}: oracle best")
        ax.plot(x, [p.ratio("last") for p in row], "--s", color=colour, alpha=0.6, label=f"{defense}: last epoch")
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.axhline(1.0, color="grey", lw=0.8, ls="-", alpha=0.4)
    ax.text(ax.get_xlim()[0], 0.45, " filtering target 0.5", color="grey", fontsize=8, ha="left", va="top")
    ax.set_xlabel("PSNR per volume, dB (lowest case)")
    ax.set_ylabel("protected / clean Dice (UNet, clean test)")
    ax.set_title("UMed on BraTS tumour core: protection against PSNR")
    values = [p.ratio(r) for p in points for r in ("best", "last") if p.ratio(r) is not None]
    ax.set_ylim(0, min(max(values + [1.2]) + 0.1, 3.0))
    ax.legend(fontsize=7, ncol=2, loc="upper left", framealpha=0.9)
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.12, top=0.92)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def examples(path: Path, case: str = "brats_2013_pat0003_1") -> bool:
    """One axial slice of a training case (the one with the most tumour core): clean, then protected at every PSNR of
    the curve whose protected data are still in benchmarks/runs/ (not committed), each with its change beside it.
    Returns False (and draws nothing) when the runs are gone."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import nibabel as nib
    import numpy as np

    runs = sorted(RUNS.glob("efficacy_brats_core_umed_tradeoff_psnr*"), key=lambda p: -tag_psnr(p.name))
    runs = [r for r in runs if (r / "protected" / f"{case}.nii.gz").exists()]
    clean_path = RUNS / "data_brats_core_train" / "images" / f"{case}.nii.gz"
    mask_path = RUNS / "data_brats_core_train" / "masks" / f"{case}.nii.gz"
    if not runs or not clean_path.exists():
        return False
    clean = np.asarray(nib.load(clean_path).dataobj, dtype=np.float32)
    from umed.regions import foreground

    mask = foreground(np.asarray(nib.load(mask_path).dataobj), TASKS["brats_core"].labels)
    z = int(mask.sum(axis=(0, 1)).argmax())
    low, high = np.percentile(clean, [0.5, 99.5])
    ys, xs = np.nonzero(mask[..., z])
    box = (slice(max(ys.min() - 20, 0), ys.max() + 20), slice(max(xs.min() - 20, 0), xs.max() + 20))
    fig, axes = plt.subplots(2, len(runs) + 1, figsize=(2.4 * (len(runs) + 1), 5))
    axes[0, 0].imshow(np.rot90(clean[..., z][box]), cmap="gray", vmin=low, vmax=high)
    axes[0, 0].set_title("clean", fontsize=9)
    axes[1, 0].imshow(np.rot90(mask[..., z][box]), cmap="gray")
    axes[1, 0].set_title("tumour core", fontsize=9)
    for column, run in enumerate(runs, start=1):
        protected = np.asarray(nib.load(run / "protected" / f"{case}.nii.gz").dataobj, dtype=np.float32)
        change = (protected - clean)[..., z][box] / (high - low)
        axes[0, column].imshow(np.rot90(protected[..., z][box]), cmap="gray", vmin=low, vmax=high)
        axes[0, column].set_title(f"{tag_psnr(run.name):g} dB per volume", fontsize=9)
        axes[1, column].imshow(np.rot90(change), cmap="coolwarm", vmin=-0.5, vmax=0.5)
        axes[1, column].set_title(f"change, max {np.abs(change).max() * 255:.0f}/255", fontsize=9)
    for ax in axes.ravel():
        ax.axis("off")
    fig.suptitle(f"{case}, slice {z}: the shipped UMed at each PSNR of the trade-off", fontsize=10)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.88, wspace=0.05, hspace=0.15)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main() -> None:
    curve_lines, points = curve()
    extra = [
        p
        for path in sorted(RESULTS.glob("efficacy_brats_core_umed_robust50_*.json"))
        for p in _points(path.stem.split("umed_")[1])
    ]
    target_lines, target_record = targets(points + extra)
    ablation_lines, ablation_record = ablation()
    seed_lines, seed_record = seeds(points + extra)
    for title, lines in (
        ("Trade-off (UNet; protected best / last / nnU-Net rule, clean in brackets)", curve_lines),
        ("Trade-off as ratios (protected / clean Dice: oracle best / last epoch)", curve_ratios(points)),
        ("Targets at 50 dB (shipped settings)", target_lines),
        ("Generator ablation at 50 dB (protected / clean Dice)", ablation_lines),
        ("A second audit seed at 50 dB", seed_lines),
    ):
        print(f"\n### {title}\n")
        print("\n".join(lines))
    figure(points, RESULTS / "figures" / "tradeoff.png")
    examples(RESULTS / "figures" / "tradeoff_examples.png")
    write_result(
        "robust_summary",
        {
            "curve": [asdict(p) | {"ratio": {r: p.ratio(r) for r in RULES}} for p in points],
            "targets": target_record,
            "ablation": ablation_record,
            "seeds": seed_record,
            "figure": "benchmarks/results/figures/tradeoff.png",
        },
    )


if __name__ == "__main__":
    main()
