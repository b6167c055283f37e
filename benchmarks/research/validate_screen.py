"""Does the fast screen rank designs as the full audit does? Spearman correlation over (design, defense) pairs
measured by both.

Usage::

    python benchmarks/research/validate_screen.py research_screen_validation_umed research_screen_validation_baselines \
        --out research_screen_validation_v1

    python benchmarks/research/validate_screen.py research_screen_v2_validation_umed \
        research_screen_v2_validation_baselines --out research_screen_validation_v2

Every source must come from the same screen protocol (``protocol_name`` in the screen's JSON, written by
``screen.py --protocol``; files from before that field are protocol v1 when their settings are v1's); the protocol
is written into the output.

Primary score (fixed before looking): protected best Dice / clean best Dice of the same protocol and defense, in
the screen and in the full audit (benchmarks/results/efficacy_brats_core_*.json). Also reported: the protected best
Dice alone and the screen's mean of the second half of the epochs. Writes benchmarks/results/<out>.json.

Seeds: sources of one protocol run with other victim seeds (``screen.py --set seed=1`` records ``v1+seed=1``) count
as the same protocol; each (design, defense) is then scored by the mean over its seeds of every screen value
(protocol "v1, 2 seeds": fixed before the seed-1 runs were seen)::

    python benchmarks/research/validate_screen.py research_screen_validation_umed research_screen_validation_baselines \
        research_screen_validation_v1_sepsalm research_screen_validation_umed_seed1 \
        research_screen_validation_baselines_seed1 --out research_screen_validation_v1_2seeds
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import RESULTS, write_result  # noqa: E402

# design name in the screen -> full-audit result file per defense
AUDIT = {
    "umed": {
        "none": "efficacy_brats_core_umed_noclip",
        "gaussian": "efficacy_brats_core_umed_noclip_defenses",
        "median": "efficacy_brats_core_umed_noclip_defenses",
        "downsample": "efficacy_brats_core_umed_noclip_defenses",
        "jpeg": "efficacy_brats_core_umed_noclip_defenses2",
        "augment": "efficacy_brats_core_umed_noclip_defenses2",
    },
    **{m: {"none": f"efficacy_brats_core_{m}_psnr50"} for m in ("random", "lsp", "ar", "tap", "em", "sep", "salm")},
}


def audit_run(name: str, defense: str) -> dict:
    doc = json.loads((RESULTS / f"{AUDIT[name][defense]}.json").read_text())
    return next(r for r in doc["runs"] if r["victim"] == "unet" and r["defense"] == defense)


def protocol_of(doc: dict, tag: str) -> str:
    """The screen protocol a screen result was measured with (``v1`` for files written before the name was
    recorded, checked against v1's settings)."""
    import harness

    if "protocol_name" in doc:
        return doc["protocol_name"]
    if doc["protocol"] != asdict(harness.PROTOCOLS.get("v1")):
        raise ValueError(f"{tag}: no protocol_name and settings differ from v1: {doc['protocol']}")
    return "v1"


def without_seed(protocol_name: str) -> str:
    """The protocol a source belongs to, its victim seed left out.

    >>> without_seed("v1+seed=1"), without_seed("v2"), without_seed("v1+epochs=12+seed=2")
    ('v1', 'v2', 'v1+epochs=12')
    """
    return "+".join(part for part in protocol_name.split("+") if not part.startswith("seed="))


SCREEN_KEYS = ("screen_best", "screen_ratio", "screen_late_ratio", "screen_last", "screen_seconds")


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("tags", nargs="+")
    parser.add_argument("--out", default="research_screen_validation")
    args = parser.parse_args()
    per_seed, protocols = [], {}
    for tag in args.tags:
        doc = json.loads((RESULTS / f"{tag}.json").read_text())
        protocols[tag] = without_seed(protocol_of(doc, tag))
        for name, entry in doc["designs"].items():
            for defense, run in entry["runs"].items():
                if name not in AUDIT or defense not in AUDIT[name]:
                    continue
                full = audit_run(name, defense)
                clean = doc["clean"][defense]
                per_seed.append(
                    {
                        "seed": doc["protocol"]["seed"],
                        "design": name,
                        "defense": defense,
                        "screen_best": run["best"],
                        "screen_ratio": run["best"] / clean["best"],
                        "screen_late_ratio": run["late_mean"] / clean["late_mean"],
                        "screen_last": run["last"],
                        "audit_best": full["protected_best"],
                        "audit_ratio": full["protected_best"] / full["clean_best"],
                        "audit_last": full["protected_last"],
                        "screen_seconds": run["seconds"],
                    }
                )
    if len(set(protocols.values())) != 1:
        raise ValueError(f"sources measured with different screen protocols: {protocols}")
    rows = []
    for key in dict.fromkeys((r["design"], r["defense"]) for r in per_seed):
        runs = [r for r in per_seed if (r["design"], r["defense"]) == key]
        seeds = sorted(r["seed"] for r in runs)
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"{key}: seed measured twice in the sources: {seeds}")
        mean = {k: sum(r[k] for r in runs) / len(runs) for k in SCREEN_KEYS}
        rows.append({**runs[0], **mean, "seed": seeds, "per_seed_ratio": [r["screen_ratio"] for r in runs]})
    stats = {}
    for screen_key, audit_key in (
        ("screen_ratio", "audit_ratio"),
        ("screen_best", "audit_best"),
        ("screen_late_ratio", "audit_ratio"),
        ("screen_last", "audit_last"),
    ):
        rho, p = spearmanr([r[screen_key] for r in rows], [r[audit_key] for r in rows])
        stats[f"{screen_key}~{audit_key}"] = {"spearman": round(float(rho), 3), "p": round(float(p), 4)}
    for r in sorted(rows, key=lambda r: r["audit_ratio"]):
        print(
            f"{r['design']:8s} {r['defense']:10s} audit {r['audit_best']:.3f} ({r['audit_ratio']:.2f})  "
            f"screen {r['screen_best']:.3f} ({r['screen_ratio']:.2f}) late {r['screen_late_ratio']:.2f}"
        )
    print(json.dumps(stats, indent=1))
    write_result(
        args.out,
        {
            "primary": "screen_ratio~audit_ratio",
            "protocol_name": next(iter(protocols.values())),
            "seeds": sorted({seed for r in rows for seed in r["seed"]}),
            "protocol": doc["protocol"],
            "n": len(rows),
            "stats": stats,
            "rows": rows,
            "sources": args.tags,
        },
    )


if __name__ == "__main__":
    main()
