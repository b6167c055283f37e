"""How well can any screen agree with the full audit? The audit's own run-to-run spread sets a ceiling on item 3's
Spearman >= 0.8.

The spread comes from three full audits of perturbations that differ by 0.15% (the generator ablation at 50 dB: the
fixed prior alone, the trained generators, trained with EOT), one per defense they share: their protected / clean
best-epoch ratios are three draws of nearly the same quantity, so the pooled within-defense standard deviation
estimates one audit run's noise. The audit ratios of a validation file (``validate_screen.py``'s rows) are then
taken as truth + that noise (the truth shrunk towards the mean so that its spread plus the noise gives the observed
spread), and the Spearman correlation between one simulated audit and a screen that ranks by the truth with its own
noise (none, the audit's divided by sqrt(2) as for a mean of two seeds, the audit's) is simulated.

Usage::

    python benchmarks/research/screen_ceiling.py research_screen_validation_v2 --out research_screen_ceiling

writes benchmarks/results/<out>.json.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
from scipy.stats import rankdata

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import RESULTS, write_result  # noqa: E402

REPLICATES = ("ablation_prior", "tradeoff_psnr50", "ablation_eot")  # 50 dB, perturbations 0.15% apart
DRAWS = 20000


def best_ratios(tag: str) -> dict[str, float]:
    """Protected / clean best-epoch Dice per defense of one full audit (UNet)."""
    doc = json.loads((RESULTS / f"efficacy_brats_core_umed_{tag}.json").read_text())
    return {r["defense"]: r["protected_best"] / r["clean_best"] for r in doc["runs"] if r["victim"] == "unet"}


def pooled_sd(replicates: list[dict[str, float]]) -> tuple[float, dict[str, list[float]]]:
    """Pooled within-defense sample standard deviation over the defenses every replicate measured."""
    shared = sorted(set.intersection(*(set(r) for r in replicates)))
    groups = {d: [r[d] for r in replicates] for d in shared}
    variances = [float(np.var(values, ddof=1)) for values in groups.values()]
    return math.sqrt(sum(variances) / len(variances)), groups


def simulate(observed: np.ndarray, noise: float, screen_noise: float, rng: np.random.Generator) -> np.ndarray:
    """Spearman correlations between one simulated audit and one simulated screen, ``DRAWS`` times."""
    shrink = math.sqrt(max(1 - noise**2 / float(np.var(observed, ddof=1)), 0.0))
    truth = observed.mean() + (observed - observed.mean()) * shrink
    audit = truth + rng.normal(0, noise, (DRAWS, truth.size))
    screen = truth + rng.normal(0, screen_noise, (DRAWS, truth.size))
    ranks = [rankdata(a, axis=1) for a in (audit, screen)]
    centred = [r - r.mean(axis=1, keepdims=True) for r in ranks]
    return (centred[0] * centred[1]).sum(axis=1) / np.sqrt(
        (centred[0] ** 2).sum(axis=1) * (centred[1] ** 2).sum(axis=1)
    )


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("validation", help="a validate_screen.py output (its rows' audit ratios are used)")
    parser.add_argument("--out", default="research_screen_ceiling")
    args = parser.parse_args()
    noise, groups = pooled_sd([best_ratios(tag) for tag in REPLICATES])
    rows = json.loads((RESULTS / f"{args.validation}.json").read_text())["rows"]
    observed = np.array([r["audit_ratio"] for r in rows])
    rng = np.random.default_rng(0)
    screens = {"noiseless": 0.0, "mean of two seeds": noise / math.sqrt(2), "as noisy as one audit": noise}
    table = {}
    for label, screen_noise in screens.items():
        rhos = simulate(observed, noise, screen_noise, rng)
        table[label] = {
            "screen_noise_sd": round(screen_noise, 4),
            "expected_spearman": round(float(rhos.mean()), 3),
            "p_spearman_at_least_0.8": round(float((rhos >= 0.8).mean()), 3),
        }
        print(
            f"{label:24s} sd {screen_noise:.3f}: expected Spearman {rhos.mean():.3f}, "
            f"P(>= 0.8) {(rhos >= 0.8).mean():.2f}"
        )
    print(f"audit noise sd {noise:.3f} from {groups}")
    write_result(
        args.out,
        {
            "audit_noise_sd": round(noise, 4),
            "replicates": {"tags": list(REPLICATES), "best_ratio_per_defense": groups},
            "validation": args.validation,
            "n": int(observed.size),
            "observed_audit_ratio_sd": round(float(np.std(observed, ddof=1)), 4),
            "draws": DRAWS,
            "screens": table,
        },
    )


if __name__ == "__main__":
    main()
