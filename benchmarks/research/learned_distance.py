"""How far is each learned perturbation from the fixed patterns (issue 22, item 1)?

For every package design already protected by the screen (``CACHE/protect/<name>``, written by ``screen.py``) the
perturbation of each training case is recovered in the audit's space (protected - clean), and compared on its
support with the fixed unit patterns of ``designs.py``: the period-2 checkerboard (UMed's prior, opposite phase on the
band), the period-4 and period-6 checkerboards, the label-aligned step. Reported per design: the correlation with
each pattern (mean over cases, over the support), the share of the perturbation's energy at the period-2 corner
of the 2D spectrum (both frequencies >= 0.4 cycles/voxel) and along one period-2 axis, and, for two designs that
differ only in a setting (with and without CDC), their correlation with each other.

Usage::

    python benchmarks/research/learned_distance.py umed_prior_only umed_learn umed_learn_nocdc ... --tag i22

writes benchmarks/results/research_learned_distance_<tag>.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import designs  # noqa: E402
import harness  # noqa: E402
from _common import BRATS_TRAIN, write_result  # noqa: E402

from umed import regions  # noqa: E402

PATTERNS = {"checker2": designs.checker(1), "checker4": designs.checker(2), "checker6": designs.checker(3)}
PATTERNS["step"] = designs.sign_step()


def perturbations(name: str, cases: dict) -> dict[str, np.ndarray]:
    """``case -> protected - clean`` in the audit's space, for a design the screen protected."""
    folder = harness.CACHE / "protect" / name
    if not (folder / "manifest.json").is_file():
        raise SystemExit(f"{folder}: not protected yet (run screen.py with this design first)")
    manifest = json.loads((folder / "manifest.json").read_text())
    metrics = {case: manifest["cases"][case]["metrics"] for case in BRATS_TRAIN}
    protected, _, _ = harness._read_protection(folder, metrics)  # the cached protection, as the screen read it
    return {case: protected[case] - cases[case].clean for case in BRATS_TRAIN}


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denominator = float(np.sqrt(np.sum(a * a) * np.sum(b * b)))
    return float(np.sum(a * b) / denominator) if denominator > 0 else 0.0


def spectrum_shares(delta: np.ndarray) -> dict[str, float]:
    """Shares of the in-plane energy (summed over slices) at the period-2 corner and on the period-2 axes."""
    power = np.zeros(delta.shape[:2])
    for z in np.flatnonzero(np.abs(delta).sum(axis=(0, 1)) > 0):
        power += np.abs(np.fft.fft2(delta[..., z])) ** 2
    fy = np.abs(np.fft.fftfreq(delta.shape[0]))[:, None]
    fx = np.abs(np.fft.fftfreq(delta.shape[1]))[None, :]
    total = float(power.sum()) or 1.0
    corner = (fy >= 0.4) & (fx >= 0.4)
    axes = ((fy >= 0.4) | (fx >= 0.4)) & ~corner
    return {"corner": float(power[corner].sum() / total), "axis": float(power[axes].sum() / total)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("designs", nargs="+")
    parser.add_argument("--tag", required=True)
    parser.add_argument("--pair", action="append", default=[], help="two designs to correlate: A,B")
    args = parser.parse_args()
    cases = harness.load_cases()
    supports = {}
    for case in BRATS_TRAIN:
        support = np.zeros_like(cases[case].core)
        for z in range(support.shape[-1]):
            support[..., z] = regions.support(cases[case].core[..., z], harness.BAND)
        supports[case] = support
    units = {p: {case: fn(cases[case]) for case in BRATS_TRAIN} for p, fn in PATTERNS.items()}
    deltas = {name: perturbations(name, cases) for name in args.designs}
    record: dict = {"designs": {}, "pairs": {}}
    for name, per_case in deltas.items():
        row: dict = {}
        for pattern in PATTERNS:
            row[f"corr_{pattern}"] = float(
                np.mean([_correlation(per_case[c][supports[c]], units[pattern][c][supports[c]]) for c in BRATS_TRAIN])
            )
        shares = [spectrum_shares(per_case[c]) for c in BRATS_TRAIN]
        row["energy_corner"] = float(np.mean([s["corner"] for s in shares]))
        row["energy_axis"] = float(np.mean([s["axis"] for s in shares]))
        record["designs"][name] = row
        print(f"{name:18s} " + "  ".join(f"{k} {v:+.3f}" for k, v in row.items()), flush=True)
    for pair in args.pair:
        a, b = pair.split(",")
        value = float(
            np.mean([_correlation(deltas[a][c][supports[c]], deltas[b][c][supports[c]]) for c in BRATS_TRAIN])
        )
        record["pairs"][pair] = value
        print(f"corr({a}, {b}) = {value:+.3f}")
    write_result(f"research_learned_distance_{args.tag}", record)


if __name__ == "__main__":
    main()
