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
    "tile_i22_tile_mark": "the learned 3D tile (4x4x2) and a keyed mark together, half the energy each (one key)",
}
RULES = ("best", "last", "nnunet")
# The 3D UNet (30 epochs, batch 2): design -> (what, audit seed -> result name). The mark: one key per seed (seed 0
# on the key of seed 1's 2D row); the learned 3D tiles: one protection, the audit seeds.
THREE_D = {
    "mark": (
        "3D UNet (30 epochs, batch 2) on the keyed mark (a new key each seed)",
        {0: "umed_i22_mark_unet3d", 1: "umed_i22_mark_unet3d_seed1", 2: "umed_i22_mark_unet3d_seed2"},
    ),
    "tile3d": (
        "3D UNet on a learned 3D tile, 16x16x4 (min-min against young 3D UNets, 300 steps; the first settings)",
        {s: f"tile_i22_tile3d_unet3d_seed{s}" for s in SEEDS},
    ),
    "tile3d_p4": (
        "3D UNet on the learned 3D tile, 4x4x2 (600 steps, a fresh 3D UNet every 100; `--method tile`)",
        {s: f"tile_i22_tile3d_p4_unet3d_seed{s}" for s in SEEDS},
    ),
    "tile_mark": (
        "3D UNet on the learned 3D tile and a keyed mark together, half the energy each (one key)",
        {s: f"tile_i22_tile_mark_unet3d_seed{s}" for s in SEEDS},
    ),
}
TARGET_3D = {"last": 0.3}
# The other 2D victims on the keyed mark of seed 0, audit seed 0 (10 epochs): the full audit of the screen's rows.
OTHER_VICTIMS = ("segresnet", "basicunet", "attentionunet")
TARGET_OTHER = {"best": 0.3}


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
    out = {}
    for design, (what, names) in THREE_D.items():
        done = {s: _ratios(RESULTS / f"efficacy_brats_core_{name}.json", "unet3d") for s, name in names.items()}
        runs = {s: r for s, r in done.items() if r is not None}
        met = len(runs) == len(names) and all(r["last"] <= TARGET_3D["last"] for r in runs.values())
        out[design] = {"what": what, "seeds": runs, "target_met": met}
    return out


def summarize_victims() -> dict:
    out = {}
    for victim in OTHER_VICTIMS:
        ratios = _ratios(RESULTS / f"efficacy_brats_core_umed_i22_mark_{victim}_seed0.json", victim)
        if ratios is not None:
            out[victim] = {"seeds": {0: ratios}, "target_met": ratios["best"] <= TARGET_OTHER["best"]}
    return out


# Key versus seed: the keyed marks of seeds 0 and 1 audited at seed 2, where seed 2's own key failed (the 2D UNet).
KEYS_AT_SEED2 = {0: "umed_i22_mark_key0_seed2", 1: "umed_i22_mark_key1_seed2", 2: "umed_i22_mark_seed2"}


def summarize_keys() -> dict:
    done = {k: _ratios(RESULTS / f"efficacy_brats_core_{name}.json") for k, name in KEYS_AT_SEED2.items()}
    return {k: r for k, r in done.items() if r is not None}


def markdown_keys(keys: dict) -> str:
    if len(keys) < 2:
        return ""
    cells = [" / ".join(f"{keys[k][r]:.2f}" for r in RULES) if k in keys else "not run" for k in KEYS_AT_SEED2]
    return (
        "| 2D UNet at audit seed 2 on the keys of seeds 0, 1, 2 (key versus seed) | " + " | ".join(cells) + " | - | - |"
    )


def markdown_3d(table: dict) -> str:
    lines = []
    for row in table.values():
        if not row["seeds"]:
            continue
        cells = [
            " / ".join(f"{row['seeds'][s][k]:.2f}" for k in RULES) if s in row["seeds"] else "not run" for s in SEEDS
        ]
        verdict = "met" if row["target_met"] else "missed"
        lines.append(f"| {row['what']} | " + " | ".join(cells) + f" | - | {verdict} (each seed last <= 0.3) |")
    return "\n".join(lines)


def markdown_victims(table: dict) -> str:
    lines = []
    for victim, row in table.items():
        cells = [
            " / ".join(f"{row['seeds'][s][k]:.2f}" for k in RULES) if s in row["seeds"] else "not run" for s in SEEDS
        ]
        verdict = "met" if row["target_met"] else "missed"
        lines.append(
            f"| {victim} (10 epochs) on the keyed mark of seed 0 | "
            + " | ".join(cells)
            + f" | - | {verdict} (best <= 0.3) |"
        )
    return "\n".join(lines)


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
    three_d, victims, keys = summarize_3d(), summarize_victims(), summarize_keys()
    parts = (markdown(table), markdown_3d(three_d), markdown_victims(victims), markdown_keys(keys))
    text = "\n".join(part for part in parts if part)
    print(text)
    write_result(
        "seeds_summary",
        {
            "target": TARGET,
            "seeds": list(SEEDS),
            "designs": table,
            "unet3d": three_d,
            "target_3d": TARGET_3D,
            "other_victims": victims,
            "target_other": TARGET_OTHER,
            "keys_at_seed2": keys,
        },
    )
    readme = README.read_text()
    pattern = re.compile(r"(<!-- seeds:ablation[^>]*-->\n).*?(<!-- /seeds:ablation -->)", re.S)
    if pattern.search(readme):
        README.write_text(pattern.sub(lambda m: m.group(1) + text + "\n" + m.group(2), readme))


if __name__ == "__main__":
    main()
