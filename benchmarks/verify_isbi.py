"""Issue 21's verification on ISBI 2012 membranes (2D EM images): a UNet trained on the 24 marked training images
(the shipped mark on the membranes, 50 dB per image, L-inf cap 24/255), and innocent UNets trained on the clean
ones, each tested with probes from the 6 clean test images (slots in cell interiors).

A threshold finds the membranes (Dice 0.55), so a shortcut competes with a strong real feature here.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/verify_isbi.py

writes benchmarks/results/verify_isbi.json.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent / "research"))

import harness  # noqa: E402
from _common import ISBI, ISBI_TEST, ISBI_TRAIN, write_result  # noqa: E402
from verify import draw_key  # noqa: E402


def load(ids):
    from umed.io import load_case

    images, structures = [], []
    for case in ids:
        image, _ = load_case(ISBI / "images" / f"{case}.png")
        mask, _ = load_case(ISBI / "masks" / f"{case}.png")
        images.append(np.asarray(image, np.float32) / 255.0)  # the 8-bit window, as config isbi_membranes
        structures.append(np.asarray(mask) > 0)
    return np.stack(images), np.stack(structures)


def marked(images, structures, key):
    from umed.verify.mark import mark_slices

    out = []
    for image, structure in zip(images, structures):
        delta, _, _ = harness.to_psnr(mark_slices(key, structure[None])[0])
        out.append(image + delta)
    return np.stack(out).astype(np.float32)


def run(name, train_x, train_y, test_x, test_y, probes, seed) -> dict:
    import torch

    from umed.audit.training import TrainSettings, train_victim

    torch.set_num_threads(1)
    found = {}
    settings = TrainSettings(
        epochs=8, batch_size=16, seed=seed, victim="unet", lr=1e-3, patch_size=(64, 64), patches_per_epoch=320
    )
    started = time.perf_counter()
    result = train_victim(
        train_x,
        train_y.astype(np.int16),
        test_x,
        test_y.astype(np.int16),
        settings,
        on_epoch=lambda m, e: found.update(test=probes.test(m).to_dict()) if e == 8 else None,
    )
    row = {
        "suspect": name,
        "seed": seed,
        "dice_best": round(result.best_dice, 4),
        "dice_last": round(result.last_dice, 4),
        "seconds": round(time.perf_counter() - started, 1),
        **found["test"],
    }
    print(row, flush=True)
    return row


def main() -> None:
    from umed.verify import VerifySettings
    from umed.verify.memory import MemoryProbes

    settings = VerifySettings.shipped()
    train_x, train_y = load(ISBI_TRAIN)
    test_x, test_y = load(ISBI_TEST)
    key = draw_key(0)
    rows = []
    probes = MemoryProbes(list(test_x), list(test_y), key, settings, seed=21)
    for seed in (0, 1):
        rows.append(run("marked", marked(train_x, train_y, key), train_y, test_x, test_y, probes, seed))
    for seed in (0, 1):
        own = MemoryProbes(list(test_x), list(test_y), draw_key(200 + seed), settings, seed=21)
        rows.append(run("innocent (clean data)", train_x, train_y, test_x, test_y, own, seed))
    write_result("verify_isbi", {"rows": rows, "probe_slots": len(probes.design.placements)})


if __name__ == "__main__":
    main()
