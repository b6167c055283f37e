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
        if r.get("experiment") == "isbi_pattern":
            keep = "ISBI clean" if s.get("clean") else (
                f"ISBI {s['pattern']} b{s['block']} amp {s['amp']} ({s['select']}) r{s['r']} outer {s['outer']} "
                f"target {s['target_db']} dB")
        else:
            keep = (f"{s.get('modality')}/{s.get('target')} {s.get('pattern')} b{s.get('block')} r{s.get('r')} "
                    f"outer {s.get('outer')} target {s.get('target_db')} dB")
            if s.get("clean_run"):
                keep = f"{s.get('modality')}/{s.get('target')} CLEAN (eps 0)"
        keep += "".join(f" {k}" for k in ("native", "aug") if s.get(k)) + f" {s.get('victim', 'unet')} seed {s.get('seed')}"
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
