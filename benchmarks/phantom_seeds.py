"""Issue 22's protocol on synthetic CT phantoms whose structure a threshold does not find: three audit seeds.

The phantoms are ``umed demo``'s (8 volumes of 64x64x16, the lesion, label 2, has its organ's mean intensity and
differs by texture only, so no threshold finds it), stored as int16 without scaling, as CT volumes in HU are. 6
training cases are protected (one protection per design, seed 0), 2 held out; each design is audited with the demo's
victim settings (2D UNet, 32-voxel crops, 12 epochs, learning rate 0.005, no defense) at audit seeds 0, 1 and 2.

Designs: ``mark`` (the shipped default, the keyed mark; a new key per run), ``prior`` (UMed's fixed period-2 prior
alone, ``--no-mark`` with 0 steps), ``learn`` (the generators that learn of issue 22: no saturation, no prior, two
surrogates of staggered ages; crop 32 for the 64-voxel slices). Usage::

    OMP_NUM_THREADS=1 python benchmarks/phantom_seeds.py --designs mark,prior,learn --tag i22

writes benchmarks/results/phantom_seeds_<tag>.json and prints protected / clean Dice per design and seed.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent / "research"))

import designs  # noqa: E402
from _common import RUNS, write_result  # noqa: E402

WORK = RUNS / "phantom_seeds"
SEEDS = (0, 1, 2)
LEARN = {**designs.LEARN, "crop": 32}  # the screen's learned design; crops fit the 64-voxel slices
DESIGNS = {  # name -> (mark, method settings over umed/configs/umed.yaml)
    "mark": (True, {}),
    "prior": (False, {"steps": 0}),
    "learn": (False, LEARN),
}


def protect(design: str, images: Path, masks: Path) -> Path:
    from umed.demo import DEMO_LABELS, DEMO_TEST_CASES
    from umed.protect import protect_dataset
    from umed.settings import load_protect_config

    mark, settings = DESIGNS[design]
    out = WORK / design / "protected"
    ids = sorted(path.name.split(".")[0] for path in images.glob("*.nii.gz"))
    fit = tuple(case for case in ids if case not in DEMO_TEST_CASES)  # the held-out cases never fit the protector
    given = {"images": images, "masks": masks, "out": out, "seed": 0, "structure_labels": DEMO_LABELS}
    cfg = load_protect_config(None, **given, mark=mark, fit_cases=fit)
    cfg = dataclasses.replace(cfg, method_settings={**cfg.method_settings, **settings})
    summary = protect_dataset(cfg, overwrite=True)
    if summary.failed:
        raise SystemExit(f"{design}: protect failed for {[r.case_id for r in summary.failed]}")
    return out


def audit(design: str, images: Path, masks: Path, protected: Path, seed: int) -> dict:
    from umed.audit import AuditConfig, run_audit
    from umed.demo import DEMO_AUDIT, DEMO_LABELS, DEMO_TEST_CASES

    settings = {**DEMO_AUDIT, "defenses": ("none",)}
    report = run_audit(
        AuditConfig(
            clean=images,
            protected=protected,
            masks=masks,
            out=WORK / design / f"report_seed{seed}",
            seed=seed,
            test_cases=DEMO_TEST_CASES,
            structure_labels=DEMO_LABELS,
            clean_cache=WORK / "clean_cache",
            **settings,
        )
    )
    (run,) = report.runs
    rules = {"best": "best_dice", "last": "last_dice", "nnunet": "nnunet_dice"}
    row = {f"clean_{k}": getattr(run.clean, v) for k, v in rules.items()}
    row |= {f"protected_{k}": getattr(run.protected, v) for k, v in rules.items()}
    row |= {f"ratio_{k}": row[f"protected_{k}"] / row[f"clean_{k}"] if row[f"clean_{k}"] else None for k in rules}
    row["threshold_floor"] = report.floor.dice
    return row


def main() -> None:
    from umed.phantom import make_phantom_dataset

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--designs", default="mark,prior,learn")
    parser.add_argument("--tag", required=True)
    args = parser.parse_args()
    images, masks = make_phantom_dataset(
        WORK / "phantoms", n_cases=8, ndim=3, shape=(64, 64, 16), seed=0, image_dtype="int16_raw"
    )
    record: dict = {"phantoms": "8 x 64x64x16 int16 (no scaling), lesion label 2, seed 0", "designs": {}}
    for design in args.designs.split(","):
        started = time.perf_counter()
        protected = protect(design, images, masks)
        runs = {seed: audit(design, images, masks, protected, seed) for seed in SEEDS}
        means = {k: statistics.fmean(r[f"ratio_{k}"] for r in runs.values()) for k in ("best", "last", "nnunet")}
        record["designs"][design] = {"runs": runs, "ratio_mean": means, "seconds": round(time.perf_counter() - started)}
        for seed, r in runs.items():
            print(
                f"{design:6s} seed {seed}: protected / clean best {r['ratio_best']:.2f} last {r['ratio_last']:.2f} "
                f"nnU-Net {r['ratio_nnunet']:.2f} (clean best {r['clean_best']:.3f}; floor {r['threshold_floor']:.3f})",
                flush=True,
            )
        write_result(f"phantom_seeds_{args.tag}", record)


if __name__ == "__main__":
    main()
