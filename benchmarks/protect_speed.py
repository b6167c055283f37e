"""Time and peak memory of fitting a UMed protector on the BraTS training cases and of applying it per volume,
beside a plain nibabel load + save of the same volume (issue 3's cost goal: applying <= 2x a plain load + save).

Each phase runs in its own process so that its peak resident memory is its own. Usage::

    python benchmarks/protect_speed.py --config umed/configs/brats_tumour_core.yaml

writes benchmarks/results/protect_speed.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BRATS, BRATS_TRAIN, RUNS, link_cases, peak_rss_mb, write_result  # noqa: E402


def _phase_fit(config: str, out: str) -> dict:
    from umed.protect import protect_dataset
    from umed.settings import load_protect_config

    images, masks = link_cases(BRATS / "t1c", BRATS / "masks", BRATS_TRAIN, RUNS / "speed_data")
    cfg = load_protect_config(Path(config), images=images, masks=masks, out=Path(out), structure_labels=(1, 3, 4))
    started = time.perf_counter()
    summary = protect_dataset(cfg)
    total = time.perf_counter() - started
    doc = json.loads(summary.protector_path.read_text())
    return {"seconds_fit_and_apply_all": round(total, 2), "training_seconds": doc["training_seconds"],
            "training_slices": doc["training_slices"], "peak_rss_mb": round(peak_rss_mb(), 1)}


def _phase_apply(protector: str, case: str, out: str) -> dict:
    from umed.intensity import fit_mapping
    from umed.io import load_case, load_mask, save_case
    from umed.protect import protect_array
    from umed.protector_io import load_protector

    protector_obj, document = load_protector(Path(protector))
    started = time.perf_counter()
    image, meta = load_case(BRATS / "t1c" / f"{case}.nii.gz")
    labels, _ = load_mask(BRATS / "masks" / f"{case}.nii.gz", image_meta=meta)
    result = protect_array(image, labels, meta, protector_obj, mapping=fit_mapping(image), structure_labels=(1, 3, 4),
                           target_psnr=document.get("target_psnr"), eps_cap=document.get("eps_cap", 16 / 255))
    save_case(result.array, meta, Path(out) / f"{case}.nii.gz")
    return {"seconds": round(time.perf_counter() - started, 3), "peak_rss_mb": round(peak_rss_mb(), 1),
            "slices_perturbed": len(result.changed_slices)}


def _phase_plain(case: str, out: str) -> dict:
    import nibabel as nib
    import numpy as np

    started = time.perf_counter()
    image = nib.load(BRATS / "t1c" / f"{case}.nii.gz")
    data = np.asarray(image.dataobj)
    nib.save(nib.Nifti1Image(data, image.affine, image.header), Path(out) / f"{case}.nii.gz")
    return {"seconds": round(time.perf_counter() - started, 3), "peak_rss_mb": round(peak_rss_mb(), 1)}


def _subprocess(*args: str) -> dict:
    output = subprocess.run([sys.executable, __file__, "--phase", *args], check=True, capture_output=True, text=True)
    return json.loads(output.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="umed/configs/brats_tumour_core.yaml")
    parser.add_argument("--phase", nargs="*")
    args = parser.parse_args()
    if args.phase:
        phase, *rest = args.phase
        print(json.dumps({"fit": _phase_fit, "apply": _phase_apply, "plain": _phase_plain}[phase](*rest)))
        return
    work = RUNS / "speed"
    for sub in ("fit", "apply", "plain"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    fit = _subprocess("fit", args.config, str(work / "fit"))
    per_case = {}
    for case in BRATS_TRAIN:
        apply = _subprocess("apply", str(work / "fit" / "protector.json"), case, str(work / "apply"))
        plain = _subprocess("plain", case, str(work / "plain"))
        per_case[case] = {"apply": apply, "plain_load_save": plain, "apply_over_plain": round(apply["seconds"] / plain["seconds"], 2)}
    ratios = [v["apply_over_plain"] for v in per_case.values()]
    path = write_result("protect_speed", {
        "config": args.config,
        "fit": fit,
        "per_case": per_case,
        "apply_over_plain_mean": round(sum(ratios) / len(ratios), 2),
        "goal": "apply <= 2 x plain nibabel load + save",
    })
    print(path)


if __name__ == "__main__":
    main()
