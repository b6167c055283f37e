"""Screen of keyed mark designs for ``umed verify`` (issue 21): is the key learned, under which defense?

Training data: the 4 BraTS training cases with the protection's product (the fixed period-2 checker ``ckb1`` on the
structure and band, which the shipped UMed generators equal, README) plus the keyed mark inside the tumour core,
sharing the 50 dB per-volume budget (``--share`` of the energy for the mark). The screening victim of ``harness.py``
(2D UNet, 64-voxel crops, 8 epochs) trains on it under a defense; after each epoch its structure probability is read
on probes built from the two clean test cases (never trained on) and the key's rank among ``--controls`` controls
gives the p-value. Innocent runs (``--innocent``) train on the clean cases instead.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/research/verify_screen.py --designs tile3x6 --defenses none,gaussian \
        --tag s1 [--controls 199] [--per-mark 8] [--share 0.5] [--seed 0] [--innocent]

writes benchmarks/results/verify_screen_<tag>.json.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import designs  # noqa: E402
import harness  # noqa: E402
from _common import BRATS_TEST, BRATS_TRAIN, write_result  # noqa: E402

from umed.verify.family import MarkFamily  # noqa: E402

FAMILIES = {
    "tile3x6": MarkFamily(cell=3, cells=6),
    "tile2x6": MarkFamily(cell=2, cells=6),
    "tile4x4": MarkFamily(cell=4, cells=4),
    "tile3x4": MarkFamily(cell=3, cells=4),
    "tile1x8": MarkFamily(cell=1, cells=8),
    "edge": MarkFamily(kind="edge"),
    "edge_spread15": MarkFamily(kind="edge", carrier_spread=0.15),
    "edge_spread25": MarkFamily(kind="edge", carrier_spread=0.25),
    "grating2_4": MarkFamily(kind="grating", period_min=2.0, period_max=4.0),
    "grating2_3": MarkFamily(kind="grating", period_min=2.0, period_max=3.0),
    "grating4_8": MarkFamily(kind="grating", period_min=4.0, period_max=8.0),
}
KEY_SEED = 20261204  # the screen's key (the package draws a secret one)


def allowed_of(data):
    from umed.regions import support

    return np.stack([support(data.core[..., z], harness.BAND) for z in range(data.core.shape[-1])], axis=-1)


def decoy_field(family: MarkFamily, key: int, shape, delta: float) -> np.ndarray:
    """Edge waves at the key's frequency +- delta (same axis and phase), half amplitude each."""
    axis, frequency, phase, _ = family.edge(key)
    rows, cols = np.arange(shape[0])[:, None], np.arange(shape[1])[None, :]
    fast, slow = (rows, cols) if axis == 0 else (cols, rows)
    out = np.zeros(shape, np.float32)
    for f in (frequency - delta, frequency + delta):
        out += 0.5 * np.cos(np.pi * fast) * np.cos(2 * np.pi * abs(f) * slow + phase)
    return out


def marked_cases(
    cases,
    family: MarkFamily,
    share: float,
    key: int,
    target_db: float = harness.TARGET_DB,
    decoy: float = 0.0,
    band_only: bool = False,
):
    """Training volumes: checker protection + keyed mark at ``share`` of the energy, 50 dB per volume."""
    from umed.regions import support

    checker = designs.get("ckb1").pattern
    out, stats = {}, {}
    for case in BRATS_TRAIN:
        data = cases[case]
        protect = checker(data).astype(np.float64)
        if band_only:  # the protection keeps the contour band, the mark takes the structure
            protect = protect * ~data.core
        field = family.field(key, data.core.shape[:2])[..., None]
        mark = field * data.core
        if decoy > 0:  # neighbours of the key on the contour band outside the structure (hard negatives)
            outer = allowed_of(data) & ~data.core
            mark = mark + decoy_field(family, key, data.core.shape[:2], decoy)[..., None] * outer
        e_p, e_m = float(np.sum(protect**2)), float(np.sum(mark**2))
        unit = (math.sqrt(1 - share) * protect / math.sqrt(e_p) if share < 1 else 0) + math.sqrt(
            share
        ) * mark / math.sqrt(e_m)
        allowed = np.stack([support(data.core[..., z], harness.BAND) for z in range(data.core.shape[-1])], axis=-1)
        assert not np.any(np.asarray(unit)[~allowed] != 0)
        delta, psnr, eps = harness.to_psnr(
            np.asarray(unit), target_db=target_db, cap=1.0 if target_db < 50 else harness.EPS_CAP
        )
        scale = float(np.abs(delta[data.core]).max()) if share > 0 else 0.0
        out[case] = data.clean + delta
        stats[case] = {"psnr": round(psnr, 3), "eps_255": round(eps * 255, 2), "mark_amp_255": round(scale * 255, 2)}
    return out, stats


def build_probes(cases, family, key, amplitude, controls, per_mark, radius, seed):
    from umed.verify.design import design_probes, render_probe
    from umed.verify.slots import find_slots

    rng = np.random.default_rng([seed, 21])
    bases = [cases[c] for c in BRATS_TEST]
    slots = [find_slots(b.clean, b.core, radius=radius, rng=rng) for b in bases]
    design = design_probes(
        slots, key, family=family, amplitude=amplitude, n_controls=controls, per_mark=per_mark, rng=rng
    )
    probes = {}
    for b, base in enumerate(bases):
        for c in range(design.copies[b]):
            probes[(b, c)] = render_probe(design, base.clean, base=b, copy=c)
    zs = {b: sorted({p.slot.z for p in design.placements if p.base == b}) for b in range(len(bases))}
    return design, probes, [b.clean for b in bases], zs


def run(args, design_name, defense, innocent):
    import torch

    from umed.audit.training import train_victim
    from umed.verify.design import score_design
    from umed.verify.inference import structure_probability

    torch.set_num_threads(1)
    cases = harness.load_cases()
    family = FAMILIES[design_name]
    marked, stats = marked_cases(cases, family, args.share, KEY_SEED, args.target_db, args.decoy, args.band_only)
    amplitude = float(np.median([s["mark_amp_255"] for s in stats.values()])) / 255 * args.probe_gain
    design, probes, bases, zs = build_probes(
        cases, family, KEY_SEED, amplitude, args.controls, args.per_mark, args.radius, args.seed
    )
    settings = harness.ScreenSettings(seed=args.seed, epochs=args.epochs, victim=args.victim)
    sets = harness.screen_sets(cases, settings)
    train_x = sets.train_clean if innocent else harness.protected_slices(sets, marked)
    epochs = []
    epochs_scores = []

    def probe(model, epoch):
        if epoch not in args.probe_epochs and epoch != settings.epochs:
            return
        t0 = time.perf_counter()
        base_answers = {b: structure_probability(model, bases[b], slices=zs[b]) for b in range(len(bases))}
        answers = {k: structure_probability(model, v, slices=zs[k[0]]) for k, v in probes.items()}
        soft = score_design(design, answers, base_answers)

        def logit(v):
            v = np.clip(v.astype(np.float64), 1e-6, 1 - 1e-6)
            return np.log(v / (1 - v))

        lg = score_design(
            design, {k: logit(v) for k, v in answers.items()}, {k: logit(v) for k, v in base_answers.items()}
        )
        print(f"  epoch {epoch}: logit p={lg.p_value:.4f} rank {lg.rank}", flush=True)
        hard = score_design(
            design,
            {k: (v > 0.5).astype(np.float32) for k, v in answers.items()},
            {k: (v > 0.5).astype(np.float32) for k, v in base_answers.items()},
        )
        from umed.verify.design import mark_scores

        scores = mark_scores(design, answers, base_answers)
        top = np.argsort(scores)[::-1][:5]
        params = {"edge": family.edge, "grating": family.grating}.get(family.kind, lambda s: None)
        print("   top:", [(round(float(scores[i]), 4), params(design.seeds[i]), i == design.key_index) for i in top])
        print("   key:", params(design.seeds[design.key_index]))
        epochs_scores.append(
            {
                "epoch": epoch,
                "scores": [round(float(v), 5) for v in scores],
                "params": [params(seed) for seed in design.seeds],
                "key_index": design.key_index,
            }
        )
        epochs.append(
            {"epoch": epoch, "soft": asdict(soft), "hard": asdict(hard), "seconds": round(time.perf_counter() - t0, 1)}
        )
        print(
            f"  epoch {epoch}: soft p={soft.p_value:.4f} rank {soft.rank} key {soft.key_score:.4f} "
            f"ctrl {soft.control_mean:.4f}+-{soft.control_sd:.4f} | hard p={hard.p_value:.4f}",
            flush=True,
        )

    train = settings.train_settings(defense)
    t0 = time.perf_counter()
    result = train_victim(
        train_x,
        sets.train_labels,
        sets.test_x,
        sets.test_y,
        train,
        clean_train_x=sets.train_clean,
        train_groups=sets.train_groups,
        on_epoch=probe,
    )
    return {
        "design": design_name,
        "defense": defense,
        "innocent": innocent,
        "seed": args.seed,
        "victim": args.victim,
        "family": family.to_dict(),
        "share": args.share,
        "band_only": args.band_only,
        "decoy": args.decoy,
        "target_db": args.target_db,
        "probe_amplitude_255": round(amplitude * 255, 2),
        "marks": len(design.seeds),
        "per_mark": args.per_mark,
        "radius": args.radius,
        "probe_slices": int(sum(len(z) for z in zs.values()) * (1 + max(design.copies))),
        "stats": stats,
        "dice_best": round(result.best_dice, 4),
        "dice_last": round(result.last_dice, 4),
        "epochs": epochs,
        "scores": epochs_scores,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--designs", default="tile3x6")
    parser.add_argument("--defenses", default="none")
    parser.add_argument("--tag", required=True)
    parser.add_argument("--controls", type=int, default=199)
    parser.add_argument("--per-mark", type=int, default=8)
    parser.add_argument("--radius", type=int, default=8)
    parser.add_argument("--share", type=float, default=0.5)
    parser.add_argument("--probe-gain", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--decoy", type=float, default=0.0)
    parser.add_argument("--band-only", action="store_true")
    parser.add_argument("--target-db", type=float, default=harness.TARGET_DB)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--victim", default="unet")
    parser.add_argument("--probe-epochs", default="")
    parser.add_argument("--innocent", action="store_true")
    args = parser.parse_args()
    args.probe_epochs = {int(e) for e in args.probe_epochs.split(",") if e}
    rows = []
    for name in args.designs.split(","):
        for defense in args.defenses.split(","):
            print(f"{name} / {defense} / {'innocent' if args.innocent else 'marked'} seed {args.seed}", flush=True)
            rows.append(run(args, name, defense, args.innocent))
            write_result(f"verify_screen_{args.tag}", {"rows": rows})


if __name__ == "__main__":
    main()
