"""Power and validity of the mark-free test (``umed verify cases``) on phantoms with enough cases (issue 21).

The owner: 40 demo-like phantoms (64x64x16, texture lesion, label 2), ``umed protect --private-share 0.2`` (8
private, 32 released, with the shipped mark). Suspects: the audit's 2D UNet trained on the released cases' slices
(structure slices plus as many without), several seeds and epochs; innocent suspects: the same network trained on
40 other phantoms (another seed of the generator), never on the release. Each suspect's Dice on every clean case,
released and private, goes into the permutation test (100,000 random splits of C(40, 8); smallest p 1e-5).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/verify_cases.py

writes benchmarks/results/verify_cases.json.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import RUNS, write_result  # noqa: E402

N_CASES, SHAPE, LABELS = 40, (64, 64, 16), (2,)


def load(images: Path, masks: Path, ids=None):
    from umed.intensity import fit_mapping
    from umed.io import discover_cases, load_case
    from umed.regions import foreground

    out = {}
    for case in discover_cases(images, masks):
        if ids is not None and case.case_id not in ids:
            continue
        image, _ = load_case(case.image_path)
        labels, _ = load_case(case.mask_path)
        out[case.case_id] = (fit_mapping(image).to_unit(image), foreground(np.asarray(labels), LABELS))
    return out


def slices(volumes: dict, seed: int):
    xs, ys = [], []
    rng = np.random.default_rng(seed)
    for image, structure in volumes.values():
        has = structure.any(axis=(0, 1))
        empty = np.flatnonzero(~has)
        z = [*np.flatnonzero(has), *rng.choice(empty, size=min(len(empty), int(has.sum())), replace=False)]
        xs.append(np.moveaxis(image[..., z], -1, 0))
        ys.append(np.moveaxis(structure[..., z], -1, 0).astype(np.int16))
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys)


def suspect(train: dict, evaluate: dict, private: tuple, seed: int, epochs: int) -> dict:
    import torch

    from umed.audit.training import TrainSettings, train_victim
    from umed.metrics import dice
    from umed.verify.cases import permutation_test
    from umed.verify.inference import structure_probability

    torch.set_num_threads(1)
    x, y = slices(train, seed)
    models = {}
    settings = TrainSettings(epochs=epochs, batch_size=8, seed=seed, victim="unet", lr=0.005)
    started = time.perf_counter()
    train_victim(x, y, x[:4], y[:4], settings, on_epoch=lambda m, e: models.update(last=m) if e == epochs else None)
    scores = {
        case_id: dice(structure_probability(models["last"], image) > 0.5, structure)
        for case_id, (image, structure) in evaluate.items()
    }
    released = [s for c, s in scores.items() if c not in private]
    test = permutation_test(released, [scores[c] for c in private], rng=np.random.default_rng(seed))
    return {
        "seed": seed,
        "epochs": epochs,
        "statistic": round(test.statistic, 4),
        "p_value": test.p_value,
        "splits": test.splits,
        "released_mean_dice": round(float(np.mean(released)), 4),
        "private_mean_dice": round(float(np.mean([scores[c] for c in private])), 4),
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    from umed.phantom import make_phantom_dataset
    from umed.protect import protect_dataset
    from umed.settings import ProtectConfig
    from umed.verify import load_key

    root = RUNS / "verify_cases"
    images, masks = make_phantom_dataset(root / "owner", n_cases=N_CASES, shape=SHAPE, seed=0)
    other_images, other_masks = make_phantom_dataset(root / "other", n_cases=N_CASES, shape=SHAPE, seed=100)
    key_path = root / "release.umed-key.json"
    summary = protect_dataset(
        ProtectConfig(
            images=images,
            masks=masks,
            out=root / "release",
            structure_labels=LABELS,
            private_share=0.2,
            key_out=key_path,
        ),
        overwrite=True,
    )
    private = load_key(key_path).private_cases
    clean = load(images, masks)
    released = {c: v for c, v in load(root / "release", masks).items()}  # the files the release holds
    other = load(other_images, other_masks)
    rows = []
    for kind, train in (("trained on the release", released), ("innocent (other phantoms)", other)):
        for seed in (0, 1, 2):
            for epochs in (5, 15):
                row = {"suspect": kind, **suspect(train, clean, private, seed, epochs)}
                print(row, flush=True)
                rows.append(row)
    write_result(
        "verify_cases",
        {"cases": N_CASES, "private": list(private), "released": len(summary.results), "rows": rows},
    )


if __name__ == "__main__":
    main()
