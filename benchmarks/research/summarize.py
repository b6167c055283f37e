"""Print a markdown table of every benchmarks/results/research_*.json (for FINDINGS.md)."""

from __future__ import annotations

import json
from pathlib import Path

RES = Path(__file__).resolve().parents[1] / "results"


def main() -> None:
    rows = []
    for f in sorted(RES.glob("research_*.json"), key=lambda p: p.stat().st_mtime):
        r = json.loads(f.read_text())
        s = r.get("settings", {})
        v = r.get("victim", {}).get("test", {})
        keep = {k: s[k] for k in ("pattern", "block", "r", "outer", "amp", "select", "interior_amp", "outer_amp",
                                   "target_db", "eps_cap", "victim", "aug", "seed", "modality", "target", "extra")
                if k in s and s[k] not in (None, False)}
        eps = ",".join(str(c.get("eps_255")) for c in r.get("cases", {}).values()) or "-"
        cv = r.get("clean_victim", {})
        ct = r.get("victim", {}).get("clean_train", {})
        rows.append(f"| {f.stem[9:]} | {keep} | {eps} | {r.get('min_psnr_db', '-')} | {r.get('min_ssim', '-')} | "
                    f"{v.get('best', '-')} / {v.get('last', '-')} | {ct.get('best', '-')} | "
                    f"{cv.get('best', '-')} | {r.get('protected_over_clean_best', '-')} |")
    print("| name | settings | eps/255 per train case | min PSNR | min SSIM | test Dice best / last | "
          "clean-train Dice best (proxy) | clean victim best | prot/clean |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
