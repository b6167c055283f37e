"""Markdown table of screen results: ``python benchmarks/research/screen_table.py research_screen_fixed ...``.

One row per (file, design): per-case PSNR range and largest L-inf, then per defense the protected best / last Dice
and best / clean best of the same screen protocol.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "results"


def main() -> None:
    defenses = ["none", "gaussian", "median", "downsample", "jpeg", "augment"]
    header = "| design | what | PSNR dB (min-max) | max L-inf /255 | " + " | ".join(defenses) + " |"
    print(header)
    print("|" + "---|" * (4 + len(defenses)))
    for tag in sys.argv[1:]:
        doc = json.loads((RESULTS / f"{tag}.json").read_text())
        for name, entry in doc["designs"].items():
            psnrs = [c["psnr"] for c in entry["cases"].values()]
            eps = max(c["eps_255"] for c in entry["cases"].values())
            cells = []
            for d in defenses:
                run = entry["runs"].get(d)
                cells.append("-" if run is None else f"{run['best']:.2f} / {run['last']:.2f} ({run['ratio_best']:.2f})")
            print(
                f"| {name} | {entry['summary']} | {min(psnrs):.1f}-{max(psnrs):.1f} | {eps:.1f} | "
                + " | ".join(cells)
                + " |"
            )
    print()
    print("Cells: protected best / last Dice (best / clean best of the same defense). Clean runs: ", end="")
    doc = json.loads((RESULTS / f"{sys.argv[1]}.json").read_text())
    print(", ".join(f"{d} {r['best']:.2f} / {r['last']:.2f}" for d, r in doc["clean"].items()))


if __name__ == "__main__":
    main()
