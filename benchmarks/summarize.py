"""Print the efficacy results in benchmarks/results/ as a Markdown table (the README quotes it)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def rows(pattern: str = "efficacy_*.json") -> list[str]:
    lines = [
        "| task | method | tag | min PSNR dB | mean PSNR dB | min SSIM | eps/255 (min-max) | floor | victim | defense | clean best/last | protected best/last | prot/clean | protect s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for path in sorted(RESULTS.glob(pattern)):
        d = json.loads(path.read_text())
        cases = d["train_cases"].values()
        psnrs = [c["psnr"] for c in cases]
        ssims = [c["ssim"] for c in cases]
        eps = [c["eps_255"] for c in cases if c.get("eps_255") is not None]
        for run in d["runs"]:
            lines.append(
                f"| {d['task']} | {d['method']} | {d['tag']} | {min(psnrs):.2f} | {sum(psnrs) / len(psnrs):.2f} | "
                f"{min(ssims):.4f} | {min(eps):.1f}-{max(eps):.1f} | {d['threshold_floor']['dice']:.3f} | {run['victim']} | "
                f"{run['defense']} | {run['clean_best']:.3f}/{run['clean_last']:.3f} | "
                f"{run['protected_best']:.3f}/{run['protected_last']:.3f} | {run['protected_over_clean_best']:.2f} | "
                f"{d['protect_seconds']:.0f} |"
            )
    return lines


if __name__ == "__main__":
    print("\n".join(rows(sys.argv[1] if len(sys.argv) > 1 else "efficacy_*.json")))
