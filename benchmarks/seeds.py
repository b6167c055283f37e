"""Issue 22's headline over three audit seeds: each design's protected / clean Dice (best, last, nnU-Net rule) for
the 2D UNet without a defense, per seed and as mean and spread, and the target (each seed: best <= 0.3 and last
<= 0.1) met or missed.

Reads benchmarks/results/efficacy_brats_core_<method>_i22_<design>_seed<s>.json (``bash benchmarks/run_all.sh
seeds-a`` and ``seeds-b``), writes benchmarks/results/seeds_summary.json and the README table between
``<!-- seeds:ablation -->`` markers, and prints it. Usage::

    python benchmarks/seeds.py
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, write_result  # noqa: E402

README = Path(__file__).resolve().parents[1] / "README.md"
SEEDS = (0, 1, 2)
TARGET = {"best": 0.3, "last": 0.1}
DESIGNS = {  # result name -> what it is
    "umed_i22_prior": "fixed period-2 prior alone (UMed's product before this issue)",
    "umed_i22_learn": "generators that learn, with CDC (no saturation, no prior, 2 young surrogates)",
    "umed_i22_learn_nocdc": "the same without CDC (plain contour generator)",
    "em_i22_em_eot": "EM with EOT in every PGD step (REM-style)",
    "umed_i22_mark": "the shipped default: the keyed mark (a new key each seed)",
}
RULES = ("best", "last", "nnunet")
# the 3D UNet (30 epochs, batch 2) on the keyed mark: one key per seed (seed 0 on the key of seed 1's 2D row)
THREE_D = {0: "umed_i22_mark_unet3d", 1: "umed_i22_mark_unet3d_seed1", 2: "umed_i22_mark_unet3d_seed2"}
TARGET_3D = {"last": 0.3}


def _ratios(path: Path, victim: str = "unet") -> dict[str, float] | None:
    if not path.is_file():
        return None
    (run,) = [r for r in json.loads(path.read_text())["runs"] if r["victim"] == victim and r["defense"] == "none"]
    out = {}
    for rule in RULES:
        clean, protected = run[f"clean_{rule}"], run[f"protected_{rule}"]
        out[rule] = protected / clean if clean else float("nan")
    out["clean_best"] = run["clean_best"]
    return out


def summarize() -> dict:
    table: dict = {}
    for design, what in DESIGNS.items():
        per_seed = {s: _ratios(RESULTS / f"efficacy_brats_core_{design}_seed{s}.json") for s in SEEDS}
        done = {s: r for s, r in per_seed.items() if r is not None}
        row: dict = {"what": what, "seeds": done}
        for rule in RULES:
            values = [r[rule] for r in done.values()]
            row[f"{rule}_mean"] = statistics.fmean(values) if values else None
            row[f"{rule}_sd"] = statistics.stdev(values) if len(values) > 1 else None
        row["target_met"] = len(done) == len(SEEDS) and all(
            r["best"] <= TARGET["best"] and r["last"] <= TARGET["last"] for r in done.values()
        )
        table[design] = row
    return table


def summarize_3d() -> dict:
    done = {s: _ratios(RESULTS / f"efficacy_brats_core_{name}.json", "unet3d") for s, name in THREE_D.items()}
    runs = {s: r for s, r in done.items() if r is not None}
    return {
        "seeds": runs,
        "target_met": len(runs) == len(THREE_D) and all(r["last"] <= TARGET_3D["last"] for r in runs.values()),
    }


def markdown_3d(row: dict) -> str:
    cells = [
        " / ".join(f"{row['seeds'][s][k]:.2f}" for k in RULES) if s in row["seeds"] else "not run" for s in THREE_D
    ]
    verdict = "met" if row["target_met"] else "missed"
    return (
        "| 3D UNet (30 epochs, batch 2) on the keyed mark (a new key each seed) | "
        + " | ".join(cells)
        + f" | - | {verdict} (each seed last <= 0.3) |"
    )


def markdown(table: dict) -> str:
    lines = [
        "| design | seed 0 | seed 1 | seed 2 | mean (sd): best / last / nnU-Net | target (each seed best <= 0.3, "
        "last <= 0.1) |",
        "|---|---|---|---|---|---|",
    ]
    for row in table.values():
        cells = []
        for s in SEEDS:
            r = row["seeds"].get(s)
            cells.append(" / ".join(f"{r[k]:.2f}" for k in RULES) if r else "not run")
        mean = " / ".join(
            f"{row[f'{k}_mean']:.2f} ({row[f'{k}_sd']:.2f})" if row[f"{k}_sd"] is not None else "-" for k in RULES
        )
        verdict = "met" if row["target_met"] else "missed"
        lines.append(f"| {row['what']} | " + " | ".join(cells) + f" | {mean} | {verdict} |")
    return "\n".join(lines)


def main() -> None:
    table = summarize()
    three_d = summarize_3d()
    text = markdown(table) + "\n" + markdown_3d(three_d)
    print(text)
    write_result(
        "seeds_summary",
        {"target": TARGET, "seeds": list(SEEDS), "designs": table, "unet3d_mark": three_d, "target_3d": TARGET_3D},
    )
    readme = README.read_text()
    pattern = re.compile(r"(<!-- seeds:ablation[^>]*-->\n).*?(<!-- /seeds:ablation -->)", re.S)
    if pattern.search(readme):
        README.write_text(pattern.sub(lambda m: m.group(1) + text + "\n" + m.group(2), readme))


if __name__ == "__main__":
    main()
