"""Print the efficacy results in benchmarks/results/ as Markdown tables (the README quotes them).

python benchmarks/summarize.py                      # every efficacy_*.json, one row per victim and defense
python benchmarks/summarize.py --compare brats_core psnr50,psnr50_segresnet --umed noclip,noclip_victims
                                                    # the method comparison of one task: one row per method
                                                    # (baseline result tags, comma-separated, then UMed's)
python benchmarks/summarize.py --salm-k brats_core eps8   # SALM's K ablation: one row per k_fraction
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _imperceptibility(d: dict) -> tuple[float, float, float, float, str]:
    cases = list(d["train_cases"].values())
    psnrs = [c["psnr"] for c in cases]
    rois = [c["psnr_roi"] for c in cases if c.get("psnr_roi") is not None]
    ssims = [c["ssim"] for c in cases]
    eps = [c["eps_255"] for c in cases if c.get("eps_255") is not None]
    span = f"{min(eps):.1f}-{max(eps):.1f}" if eps else "-"
    return min(psnrs), sum(psnrs) / len(psnrs), (sum(rois) / len(rois)) if rois else float("nan"), min(ssims), span


def _tag(path: Path, d: dict) -> str:
    """The result tag of ``efficacy_<task>_<method>_<tag>.json``."""
    return path.stem[len("efficacy_" + d["task"] + "_" + d["method"] + "_") :]


def rows(pattern: str = "efficacy_*.json") -> list[str]:
    lines = [
        "| task | method | tag | min PSNR dB | mean ROI PSNR dB | min SSIM | eps/255 (min-max) | floor | victim | "
        "defense | "
        "clean best/last | protected best (epoch)/last | prot/clean best | protect s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for path in sorted(RESULTS.glob(pattern)):
        d = _load(path)
        low, _, roi, ssim, span = _imperceptibility(d)
        for run in d["runs"]:
            epoch = run.get("protected_best_epoch")
            lines.append(
                f"| {d['task']} | {d['method']} | {_tag(path, d)} | {low:.2f} | {roi:.2f} | {ssim:.4f} | {span} | "
                f"{d['threshold_floor']['dice']:.3f} | {run['victim']} | {run['defense']} | "
                f"{run['clean_best']:.3f}/{run['clean_last']:.3f} | "
                f"{run['protected_best']:.3f}{f' ({epoch})' if epoch else ''}/{run['protected_last']:.3f} | "
                f"{run['protected_over_clean_best']:.2f} | {d['protect_seconds']:.0f} |"
            )
    return lines


def _protect_seconds(ds: list[dict]) -> float:
    """The protect time of one method's results: the run that fitted and applied (a run on the protected data of an
    earlier run resumes and takes about 0 s)."""
    return max(d["protect_seconds"] for d in ds)


def compare(task: str, tags: list[str], umed_tags: list[str]) -> list[str]:
    """One row per method for ``task``: the baselines' results tagged one of ``tags`` and UMed's ``umed_tags``."""
    found: dict[str, list[dict]] = {}
    for path in sorted(RESULTS.glob(f"efficacy_{task}_*.json")):
        d = _load(path)
        result_tag = _tag(path, d)
        if (d["method"] == "umed" and result_tag in umed_tags) or (d["method"] != "umed" and result_tag in tags):
            found.setdefault(d["method"], []).append(d)
    victims = sorted(
        {r["victim"] for ds in found.values() for d in ds for r in d["runs"] if r["defense"] == "none"},
        key=["unet", "segresnet", "basicunet", "attentionunet", "unet3d"].index,
    )
    head = ["method", "min PSNR dB", "mean ROI PSNR dB", "min SSIM", "eps/255"]
    head += [f"{v} clean / protected best (last)" for v in victims] + ["protect s (training cases)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    from umed.protectors import PROTECTORS

    order = list(PROTECTORS.names())  # the registry's order: umed first, then the baselines
    for method in sorted(found, key=lambda m: order.index(m) if m in order else 99):
        ds = found[method]
        low, _, roi, ssim, span = _imperceptibility(ds[0])
        cells = [f"`{method}`", f"{low:.2f}", f"{roi:.2f}", f"{ssim:.4f}", span]
        for victim in victims:
            run = next((r for d in ds for r in d["runs"] if r["victim"] == victim and r["defense"] == "none"), None)
            cells.append(
                "-"
                if run is None
                else f"{run['clean_best']:.3f} / **{run['protected_best']:.3f}** ({run['protected_last']:.3f})"
            )
        cells.append(f"{_protect_seconds(ds):.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def salm_k(task: str, tag: str) -> list[str]:
    """SALM's K ablation on ``task``: the SALM results tagged ``tag`` (the config's K) or ``tag_k<K>``, by K."""
    found = []
    for path in sorted(RESULTS.glob(f"efficacy_{task}_salm_*.json")):
        d = _load(path)
        result_tag = _tag(path, d)
        if result_tag == tag or result_tag.startswith(tag + "_k"):
            found.append((float(d["settings"]["method_settings"]["k_fraction"]), d))
    lines = [
        "| K (fraction of structure + band voxels) | min / mean PSNR dB | mean ROI PSNR dB | min SSIM | victim | "
        "clean best / last | protected best (epoch) / last | protect s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for k, d in sorted(found, key=lambda item: item[0]):
        low, mean, roi, ssim, _ = _imperceptibility(d)
        for run in (r for r in d["runs"] if r["defense"] == "none"):
            lines.append(
                f"| {k:g} | {low:.2f} / {mean:.2f} | {roi:.2f} | {ssim:.4f} | {run['victim']} | "
                f"{run['clean_best']:.3f} / {run['clean_last']:.3f} | {run['protected_best']:.3f} "
                f"({run.get('protected_best_epoch')}) / {run['protected_last']:.3f} | {d['protect_seconds']:.0f} |"
            )
    return lines


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pattern", default="efficacy_*.json")
    parser.add_argument("--compare", nargs=2, metavar=("TASK", "TAGS"), help="baseline result tags, comma-separated")
    parser.add_argument("--umed", default="noclip,noclip_victims", help="UMed result tags for --compare")
    parser.add_argument("--salm-k", nargs=2, metavar=("TASK", "TAG"))
    args = parser.parse_args()
    if args.salm_k:
        print("\n".join(salm_k(*args.salm_k)))
    elif args.compare:
        print("\n".join(compare(args.compare[0], args.compare[1].split(","), args.umed.split(","))))
    else:
        print("\n".join(rows(args.pattern)))
