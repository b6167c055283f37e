"""Issue 21's target table: does ``umed verify`` catch models trained on marked BraTS data, and does it leave innocent
models alone?

Data: BraTS 2015 tumour core on T1c. The marked release is the 4 training cases as ``umed protect`` writes them with
the shipped mark (``umed/configs/verify.yaml``: the key's edge wave on the structure, the whole 50 dB per-volume
budget, L-inf cap 24/255; :func:`umed.verify.mark.mark_slices` and the exact-PSNR rescale). Probes: the two clean
test cases (never trained on), ``umed verify``'s shipped probe settings (999 controls + the key, 4 slots each).
Suspects: the screening victim of ``benchmarks/research/harness.py`` (2D networks on 64-voxel crops of native
slices, 8 epochs; 3D UNet on 48^3 patches, batch 2), trained under each defense; probed at the last epoch, and for
the nnU-Net augmentation at the checkpoint of each selection rule (validation case pat0006). Innocent suspects train
on the clean cases (4 architectures, seeds, defenses) or on data marked with another key, and each is tested with
its own freshly drawn key.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/verify.py --rows marked --tag marked
    OMP_NUM_THREADS=1 python benchmarks/verify.py --rows innocent --tag innocent
    python benchmarks/verify.py --summarize   # tables for the README from every verify_*.json

writes benchmarks/results/verify_<tag>.json (one record per suspect, written after each).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent / "research"))

import harness  # noqa: E402
from _common import BRATS_TEST, BRATS_TRAIN, RESULTS, write_result  # noqa: E402

KEY_ENTROPY = 21  # the benchmark's keys are drawn from default_rng([KEY_ENTROPY, i]); the package uses secrets
VALIDATION = "brats_2013_pat0006_1"


@dataclass(frozen=True)
class Suspect:
    name: str
    victim: str = "unet"
    defense: str = "none"
    seed: int = 0
    data: str = "marked"  # marked (key 0), clean, other (key 1)
    key: int = 0  # the key the probes test
    rules: bool = False  # probe every epoch and report best / last / nnU-Net checkpoints
    epochs: int = 8


def suspects() -> dict[str, list[Suspect]]:
    marked = [Suspect(f"plain seed {s}", seed=s) for s in (0, 1, 2)]
    marked += [Suspect("nnU-Net augmentation", defense="augment", rules=True)]
    marked += [Suspect(f"{d}", defense=d) for d in ("gaussian", "median", "downsample")]
    marked += [Suspect("SegResNet", victim="segresnet"), Suspect("mix half clean", defense="mix")]
    innocent = [Suspect(f"clean unet seed {s}", seed=s, data="clean", key=100 + s) for s in range(6)]
    innocent += [
        Suspect(f"clean {v} seed {s}", victim=v, seed=s, data="clean", key=110 + 10 * i + s)
        for i, v in enumerate(("segresnet", "basicunet", "attentionunet"))
        for s in (0, 1, 2)
    ]
    innocent += [
        Suspect(f"clean unet {d}", defense=d, data="clean", key=150 + i)
        for i, d in enumerate(("gaussian", "augment", "median", "downsample"))
    ]
    innocent += [Suspect(f"other key unet seed {s}", seed=s, data="other", key=0) for s in (0, 1)]
    innocent += [Suspect("other key unet augment", defense="augment", data="other", key=0)]
    return {"marked": marked, "innocent": innocent, "unet3d": [Suspect("3D UNet", victim="unet3d", epochs=8)]}


def draw_key(index: int):
    from umed.verify import MarkKey, VerifySettings

    settings = VerifySettings.shipped()
    seed = int(np.random.default_rng([KEY_ENTROPY, index]).integers(0, 2**63 - 1))
    return MarkKey(seed=seed, family=settings.family, share=settings.mark_share)


def marked_volumes(cases, key) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
    """The training cases as ``umed protect`` marks them (share 1: the mark alone), 50 dB per volume."""
    from umed.verify.mark import mark_slices

    out, stats = {}, {}
    for case in [*BRATS_TRAIN]:
        data = cases[case]
        unit = np.moveaxis(mark_slices(key, np.moveaxis(data.core, -1, 0)), 0, -1)
        delta, psnr, eps = harness.to_psnr(unit)
        out[case] = data.clean + delta
        stats[case] = {"psnr": round(psnr, 3), "eps_255": round(eps * 255, 2)}
    return out, stats


def probe_set(cases, key, settings):
    """Probes of ``key`` from the two clean test cases (never trained on), in the audit's normalised space."""
    from umed.verify.memory import MemoryProbes

    return MemoryProbes(
        [cases[c].clean for c in BRATS_TEST], [cases[c].core for c in BRATS_TEST], key, settings, seed=KEY_ENTROPY
    )


def run(suspect: Suspect, cases, probe_sets, settings) -> dict:
    import torch

    from umed.audit.selection import select_epochs
    from umed.audit.training import TrainSettings, train_victim

    torch.set_num_threads(1)
    screen = harness.ScreenSettings(seed=suspect.seed, epochs=suspect.epochs, victim=suspect.victim)
    sets = harness.screen_sets(cases, screen)
    volumes = {"clean": {c: cases[c].clean for c in BRATS_TRAIN}}
    if suspect.data != "clean":
        volumes[suspect.data], stats = marked_volumes(cases, draw_key(0 if suspect.data == "marked" else 1))
    train_volumes = volumes[suspect.data]
    probes = probe_sets(suspect.key)
    epochs: dict[int, dict] = {}
    three_d = suspect.victim == "unet3d"
    window = (48, 48, 48) if three_d else None

    def on_epoch(model, epoch):
        if suspect.rules or epoch == suspect.epochs:
            epochs[epoch] = probes.test(model, window=window).to_dict()

    val = {}
    if suspect.rules:  # nnU-Net's rule: validation case held out of training, in its (marked) training form
        keep = [i for i, g in enumerate(sets.train_groups) if BRATS_TRAIN[g] != VALIDATION]
        zs = sets.index[VALIDATION]
        val_x = np.moveaxis(train_volumes[VALIDATION][..., zs], -1, 0)
        val_y = np.moveaxis(cases[VALIDATION].core[..., zs], -1, 0).astype(np.int16)
        has = val_y.any(axis=(1, 2))
        val = {"val_x": val_x[has][:, 72:168, 72:168], "val_y": val_y[has][:, 72:168, 72:168]}
    else:
        keep = list(range(len(sets.train_groups)))
    if three_d:
        train_x = np.stack([train_volumes[c][:, :, 8:152] for c in BRATS_TRAIN])
        train_y = np.stack([cases[c].core[:, :, 8:152] for c in BRATS_TRAIN]).astype(np.int16)
        test_x = np.stack([cases[c].clean[72:168, 72:168, 40:136] for c in BRATS_TEST])
        test_y = np.stack([cases[c].core[72:168, 72:168, 40:136] for c in BRATS_TEST]).astype(np.int16)
        train = TrainSettings(
            epochs=suspect.epochs,
            batch_size=2,
            seed=suspect.seed,
            victim="unet3d",
            lr=1e-3,
            defense=suspect.defense,
            patch_size=(48, 48, 48),
            patches_per_epoch=80,
        )
        extra = {}
    else:
        slices = np.concatenate([np.moveaxis(train_volumes[c][..., sets.index[c]], -1, 0) for c in BRATS_TRAIN])
        train_x, train_y = slices[keep], sets.train_labels[keep]
        test_x, test_y = sets.test_x, sets.test_y
        train = screen.train_settings(suspect.defense)
        extra = {"clean_train_x": sets.train_clean[keep], "train_groups": sets.train_groups[keep]}
    started = time.perf_counter()
    result = train_victim(train_x, train_y, test_x, test_y, train, on_epoch=on_epoch, **extra, **val)
    record = {
        **asdict(suspect),
        "dice_best": round(result.best_dice, 4),
        "dice_last": round(result.last_dice, 4),
        "dice_curve": [round(float(d), 4) for d in result.test_dice],
        "seconds": round(time.perf_counter() - started, 1),
        "tests": {},
    }
    if suspect.rules:
        picks = select_epochs(result.test_dice, result.val_dice or None)
        record["tests"] = {rule: {"epoch": e, **epochs[e]} for rule, e in picks.items() if e is not None}
    else:
        record["tests"] = {"last": {"epoch": suspect.epochs, **epochs[suspect.epochs]}}
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="marked", help="marked, innocent, unet3d (comma-separated)")
    parser.add_argument("--only", default="", help="comma-separated suspect names to run (default: all)")
    parser.add_argument("--tag", default="")
    parser.add_argument("--summarize", action="store_true")
    args = parser.parse_args()
    if args.summarize:
        summarize()
        return
    from umed.verify import VerifySettings

    settings = VerifySettings.shipped()
    cases = harness.load_cases()
    cache: dict[int, object] = {}

    def probe_sets(index: int):
        if index not in cache:
            cache.clear()  # one key's probes at a time
            cache[index] = probe_set(cases, draw_key(index), settings)
        return cache[index]

    chosen = [s for group in args.rows.split(",") for s in suspects()[group]]
    if args.only:
        names = {n.strip() for n in args.only.split(",")}
        chosen = [s for s in chosen if s.name in names]
    records = []
    for suspect in chosen:
        print(f"{suspect.name} ({suspect.victim}, {suspect.defense}, {suspect.data})", flush=True)
        record = run(suspect, cases, probe_sets, settings)
        for rule, test in record["tests"].items():
            print(
                f"  {rule}: soft p={test['p_soft']:.4f} rank {test['rank_soft']} | "
                f"hard p={test['p_hard']:.4f} | dice {record['dice_best']}/{record['dice_last']}",
                flush=True,
            )
        records.append(record)
        write_result(
            f"verify_{args.tag or args.rows.replace(',', '_')}",
            {
                "settings": {
                    "family": settings.family.to_dict(),
                    "mark_share": settings.mark_share,
                    "controls": settings.controls,
                    "per_mark": settings.per_mark,
                    "amplitude_255": round(settings.amplitude * 255, 2),
                },
                "suspects": records,
            },
        )


GOALS = {  # issue 21's targets, by suspect name (the row of the target table it belongs to)
    "plain seed 0": 0.001,
    "plain seed 1": 0.001,
    "plain seed 2": 0.001,
    "nnU-Net augmentation": 0.001,
    "gaussian": 0.01,
    "median": 0.01,
    "downsample": 0.01,
    "3D UNet": 0.01,
    "SegResNet": 0.01,
    "mix half clean": 0.01,
}


def _records() -> list[dict]:
    """Every suspect of every verify_<tag>.json, once (a suspect run in two files: the first file's, by name)."""
    rows: dict[str, dict] = {}
    for path in sorted(RESULTS.glob("verify_*.json")):
        if path.name.startswith("verify_screen") or path.name == "verify_summary.json":
            continue
        for row in json.loads(path.read_text()).get("suspects", []):  # verify_cases/isbi: their own scripts
            rows.setdefault(row["name"], row)
    return list(rows.values())


def _count_line(count: dict) -> str:
    return (
        f"{count['models']} innocent models: {count['at_or_below_0.01']} at p <= 0.01 and "
        f"{count['at_or_below_0.05']} at p <= 0.05 on probabilities ({count['hard_at_or_below_0.01']} and "
        f"{count['hard_at_or_below_0.05']} on hard masks); "
        f"the smallest p {count['min_p']:.3g}. Goal: none at p <= 0.01, at most one at p <= 0.05."
    )


def _into_readme(marker: str, lines: list[str]) -> None:
    """Replace the README's block between ``<!-- marker -->`` and ``<!-- /marker -->`` with ``lines``."""
    from _common import ROOT

    readme = ROOT / "README.md"
    text = readme.read_text()
    start, end = f"<!-- {marker} -->", f"<!-- /{marker} -->"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        readme.write_text(head + start + "\n" + "\n".join(lines) + "\n" + end + tail)


def summarize() -> None:
    """Markdown tables for the README (targets, innocent models) and benchmarks/results/verify_summary.json."""
    rows = _records()
    marked = [r for r in rows if r["data"] == "marked"]
    innocent = [r for r in rows if r["data"] != "marked"]
    target_lines = ["| suspect (marked data) | goal | p (probabilities) | p (hard masks) | rank of 1000 | met |"]
    target_lines.append("|---|---|---|---|---|---|")
    summary: dict = {"targets": [], "innocent": []}
    for r in marked:
        goal = GOALS.get(r["name"], 0.01)
        for rule, t in r["tests"].items():
            label = r["name"] + (f", {rule} checkpoint" if r["rules"] else "")
            met = "yes" if t["p_soft"] <= goal else f"no (by {t['p_soft'] - goal:.3g})"
            hard = f"{t['p_hard']:.3g}" + ("" if t["p_hard"] <= 0.01 else " (goal 0.01: no)")
            target_lines.append(f"| {label} | p <= {goal:g} | {t['p_soft']:.3g} | {hard} | {t['rank_soft']} | {met} |")
            summary["targets"].append({"suspect": label, "goal": goal, **t, "met": t["p_soft"] <= goal})
    fp_lines = ["| innocent suspect | trained on | p (probabilities) | p (hard masks) |", "|---|---|---|---|"]
    for r in innocent:
        t = r["tests"]["last"]
        trained = "clean cases" if r["data"] == "clean" else "data marked with another key"
        fp_lines.append(f"| {r['name']} | {trained} | {t['p_soft']:.3g} | {t['p_hard']:.3g} |")
        summary["innocent"].append({"suspect": r["name"], "data": r["data"], **t})
    p_values = [t["p_soft"] for t in summary["innocent"]] + [t["p_hard"] for t in summary["innocent"]]
    count = {
        "models": len(innocent),
        "at_or_below_0.01": sum(t["p_soft"] <= 0.01 for t in summary["innocent"]),
        "at_or_below_0.05": sum(t["p_soft"] <= 0.05 for t in summary["innocent"]),
        "hard_at_or_below_0.01": sum(t["p_hard"] <= 0.01 for t in summary["innocent"]),
        "hard_at_or_below_0.05": sum(t["p_hard"] <= 0.05 for t in summary["innocent"]),
        "min_p": min(p_values) if p_values else None,
    }
    summary["innocent_counts"] = count
    write_result("verify_summary", summary)
    _into_readme("verify:targets", target_lines)
    _into_readme("verify:innocent", [*fp_lines, "", _count_line(count)])
    print("\n".join(target_lines))
    print()
    print("\n".join(fp_lines))
    print()
    print(json.dumps(count))


if __name__ == "__main__":
    main()
