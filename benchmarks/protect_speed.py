"""Cost of applying a fitted protector (``umed protect --protector P``) per volume, beside a plain load + save of the
same file (issue 15's goal: <= 2x), its peak memory, and the batch throughput with 1 and 2 local workers and on a
2-worker Dask LocalCluster.

Volumes: the four BraTS training cases (240x240x155 float32 NIfTI, tumour core), a DICOM series made from one of
them (int16 + slope, 155 files), and a 512x512x400 int16 CT-sized phantom (``image_dtype="int16_raw"``, lesion
label). The protectors have the architecture of umed/configs/brats_tumour_core.yaml; their training steps are cut
(``--fit-steps``) because the cost of applying does not depend on how long the generator was trained.

Each measurement runs in its own process (peak resident memory is that process's own, torch included); per volume
the apply and the plain I/O are each timed three times and the median is kept. Usage::

    OMP_NUM_THREADS=1 python benchmarks/protect_speed.py --fit-steps 20

writes benchmarks/results/protect_speed.json. Timings from a shared machine vary: the JSON records the load.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this tree's umed, also in the Dask workers

from _common import BRATS, BRATS_TEST, BRATS_TRAIN, RUNS, link_cases, peak_rss_mb, write_result  # noqa: E402

WORK = RUNS / "speed"
DICOM_CASE = BRATS_TRAIN[0]
CT_SHAPE = (512, 512, 400)
REPEATS = 3


def _phase_prepare(config: str, fit_steps: int) -> dict:
    """Inputs (links to BraTS, a DICOM series, the CT phantom) and the two protectors."""
    import nibabel as nib
    import numpy as np
    import yaml

    from umed.io import load_case, make_dicom_series
    from umed.phantom import make_phantom_dataset
    from umed.protect import protect_dataset
    from umed.settings import load_protect_config

    brats = link_cases(BRATS / "t1c", BRATS / "masks", BRATS_TRAIN + BRATS_TEST, WORK / "brats")
    settings = yaml.safe_load(Path(config).read_text())
    settings["mark"] = False  # fit the protector (the mark alone would fit nothing)
    settings["method_settings"]["steps"] = fit_steps
    fit_config = WORK / "fit.yaml"
    fit_config.write_text(yaml.safe_dump(settings))
    fit_on = link_cases(BRATS / "t1c", BRATS / "masks", BRATS_TRAIN, WORK / "brats_fit")
    started = time.perf_counter()
    cfg = load_protect_config(fit_config, images=fit_on[0], masks=fit_on[1], out=WORK / "fit_brats")
    protect_dataset(cfg, workers=1)
    fit_seconds = time.perf_counter() - started

    array, _ = load_case(BRATS / "t1c" / f"{DICOM_CASE}.nii.gz")
    mask = nib.load(BRATS / "masks" / f"{DICOM_CASE}.nii.gz")
    affine = np.diag([0.9, 0.9, 1.0, 1.0])
    (WORK / "dicom" / "masks").mkdir(parents=True, exist_ok=True)
    make_dicom_series(np.round(array * 100) / 100, affine, WORK / "dicom" / "images" / DICOM_CASE, slope=0.01)
    nib.save(
        nib.Nifti1Image(np.asarray(mask.dataobj).astype(np.int16), affine),
        WORK / "dicom" / "masks" / f"{DICOM_CASE}.nii.gz",
    )

    make_phantom_dataset(WORK / "ct", n_cases=1, shape=CT_SHAPE, seed=0, image_dtype="int16_raw")
    make_phantom_dataset(WORK / "ct_fit", n_cases=2, shape=(128, 128, 16), seed=1, image_dtype="int16_raw")
    cfg = load_protect_config(
        fit_config,
        images=WORK / "ct_fit" / "images",
        masks=WORK / "ct_fit" / "masks",
        out=WORK / "fit_ct",
        structure_labels=(2,),
    )
    protect_dataset(cfg, workers=1)
    return {"brats_images": str(brats[0]), "fit_steps": fit_steps, "fit_seconds_brats": round(fit_seconds, 1)}


def _one_case_folder(images: Path, masks: Path, case: str) -> tuple[Path, Path]:
    """A folder holding just this case (links), so protect_dataset runs the batch code on one volume."""
    target = WORK / "one" / f"{images.parent.name}_{case}"
    for source, name in ((images, "images"), (masks, "masks")):
        (target / name).mkdir(parents=True, exist_ok=True)
        for path in source.iterdir():
            if path.name.split(".")[0] == case and not (target / name / path.name).exists():
                (target / name / path.name).symlink_to(path.resolve())
    return target / "images", target / "masks"


def _config(images: Path, masks: Path, out: Path, protector: str):
    """``protector`` "mark:LABELS": the shipped default (the keyed mark alone on those labels, nothing fitted; one key
    for every run), else the saved protector without the mark."""
    from umed.settings import ProtectConfig

    if protector.startswith("mark:"):  # "mark:1,3,4": the structure labels
        labels = tuple(int(v) for v in protector.split(":")[1].split(","))
        key = WORK / "speed.umed-key.json"
        return ProtectConfig(images=images, masks=masks, out=out, key_out=key, structure_labels=labels)
    return ProtectConfig(images=images, masks=masks, out=out, protector=Path(protector), mark=False)


def _phase_apply(images: str, masks: str, case: str, protector: str) -> dict:
    """``umed protect --protector`` on a folder holding one case, three times (fresh output each time)."""
    from umed.protect import protect_dataset

    one_images, one_masks = _one_case_folder(Path(images), Path(masks), case)
    rss_before = peak_rss_mb()
    seconds, entry = [], {}
    generator = _time_perturb()
    per_case, manifest_writes = _time_per_case()
    for repeat in range(REPEATS):
        out = WORK / "apply_out" / f"{case}_{repeat}"
        shutil.rmtree(out, ignore_errors=True)
        generator.append(0.0)
        per_case.append(0.0)
        manifest_writes.clear()
        started = time.perf_counter()
        summary = protect_dataset(_config(one_images, one_masks, out, protector))
        seconds.append(time.perf_counter() - started)
        per_case[-1] += manifest_writes[0]
        entry = json.loads(summary.manifest_path.read_text())["cases"][case]
        shutil.rmtree(out, ignore_errors=True)
    return {
        "seconds": [round(s, 3) for s in seconds],
        "median_seconds": round(statistics.median(seconds), 3),
        "marginal_seconds": [round(s, 3) for s in per_case],
        "marginal_median_seconds": round(statistics.median(per_case), 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "rss_after_imports_mb": round(rss_before, 1),
        "slices_perturbed": entry["changed_slices"],
        "psnr": round(entry["metrics"]["psnr"], 2),
        "generator_seconds_median": round(statistics.median(generator), 3),
    }


def _time_perturb() -> list[float]:
    """Instrument UMedProtector.perturb (the generator passes): its seconds add up in the list's last item (append
    0.0 before each run); the results are unchanged."""
    from umed.protectors.contour_texture import UMedProtector

    totals: list[float] = []
    original = UMedProtector.perturb

    def timed(self, batch):
        started = time.perf_counter()
        try:
            return original(self, batch)
        finally:
            totals[-1] += time.perf_counter() - started

    UMedProtector.perturb = timed
    return totals


def _time_per_case() -> tuple[list[float], list[float]]:
    """Instrument what a run spends per case (the marginal cost of one more volume in a batch): hashing its image
    and mask (plan) and its job (read, check, perturb, write, hash the output) add up in the first list's last item
    (append 0.0 before each run); every manifest write goes into the second list (clear it before each run: its
    first item is the write after the case's job, the last one repeats it at the end of the run). The run's fixed
    costs (discovery, the structure check, the manifest header, imports) are left out; the results are unchanged."""
    import umed.io.atomic as atomic
    import umed.protect.plan as plan
    import umed.protect.run as run

    totals: list[float] = []
    manifest_writes: list[float] = []

    def timed(function):  # adds its seconds to the run's total
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                totals[-1] += time.perf_counter() - started

        return wrapper

    def write(original):  # records each manifest write
        def wrapper(data, target, **kwargs):
            started = time.perf_counter()
            try:
                return original(data, target, **kwargs)
            finally:
                if Path(target).name == "manifest.json":
                    manifest_writes.append(time.perf_counter() - started)

        return wrapper

    run.protect_job = timed(run.protect_job)
    plan.case_hashes = timed(plan.case_hashes)
    atomic.write_json_atomic = write(atomic.write_json_atomic)
    return totals, manifest_writes


def _phase_plain(image: str) -> dict:
    """Load + save of the same file (nibabel) or series (pydicom, every file), three times."""
    import nibabel as nib
    import numpy as np
    import pydicom

    source = Path(image)
    seconds = []
    for repeat in range(REPEATS):
        out = WORK / "plain_out" / f"{source.name}_{repeat}"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        started = time.perf_counter()
        if source.is_dir():
            for path in sorted(source.iterdir()):
                dataset = pydicom.dcmread(path)
                _ = dataset.pixel_array
                dataset.save_as(out / path.name)
        else:
            loaded = nib.load(source)
            data = np.asarray(loaded.dataobj)
            nib.save(nib.Nifti1Image(data, loaded.affine, loaded.header), out / source.name)
        seconds.append(time.perf_counter() - started)
        shutil.rmtree(out, ignore_errors=True)
    return {
        "seconds": [round(s, 3) for s in seconds],
        "median_seconds": round(statistics.median(seconds), 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def _phase_batch(images: str, masks: str, protector: str, workers: str, scheduler: str) -> dict:
    """The whole ``umed protect --protector`` batch: wall time including the start of the worker processes."""
    from umed.protect import protect_dataset

    out = WORK / "batch_out" / f"w{workers}_{'cluster' if scheduler != '-' else 'local'}"
    shutil.rmtree(out, ignore_errors=True)
    cluster = None
    if scheduler != "-":
        from distributed import LocalCluster

        cluster = LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True, dashboard_address=None)
    started = time.perf_counter()
    summary = protect_dataset(
        _config(Path(images), Path(masks), out, protector),
        workers=int(workers),
        scheduler=cluster.scheduler_address if cluster else None,
    )
    seconds = time.perf_counter() - started
    if cluster is not None:
        cluster.close()
    volumes = sum(result.status == "protected" for result in summary.results)
    return {"volumes": volumes, "seconds": round(seconds, 2), "volumes_per_minute": round(60 * volumes / seconds, 2)}


def _subprocess(*args: str) -> dict:
    output = subprocess.run([sys.executable, __file__, "--phase", *args], check=True, capture_output=True, text=True)
    return json.loads(output.stdout.strip().splitlines()[-1])


def _volume(kind: str, images: Path, masks: Path, case: str, protector: Path, plain_path: Path) -> dict:
    apply = _subprocess("apply", str(images), str(masks), case, str(protector))
    plain = _subprocess("plain", str(plain_path))
    return {
        "kind": kind,
        "apply": apply,
        "plain_load_save": plain,
        "apply_over_plain": round(apply["median_seconds"] / plain["median_seconds"], 2),
        "marginal_over_plain": round(apply["marginal_median_seconds"] / plain["median_seconds"], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="umed/configs/brats_tumour_core.yaml")
    parser.add_argument("--fit-steps", type=int, default=20)
    parser.add_argument("--phase", nargs="*")
    parser.add_argument(
        "--mark", action="store_true", help="measure the shipped default (the keyed mark) instead of a fitted protector"
    )
    args = parser.parse_args()
    if args.phase:
        phase, *rest = args.phase
        phases = {"prepare": _phase_prepare, "apply": _phase_apply, "plain": _phase_plain, "batch": _phase_batch}
        if phase == "prepare":
            rest = [rest[0], int(rest[1])]
        print(json.dumps(phases[phase](*rest)))
        return
    load_before = os.getloadavg()
    done = WORK / "prepared.json"  # inputs and protectors of an earlier run with the same --fit-steps are reused
    prepared = json.loads(done.read_text()) if done.is_file() else {}
    if prepared.get("fit_steps") != args.fit_steps:
        prepared = _subprocess("prepare", args.config, str(args.fit_steps))
        done.write_text(json.dumps(prepared))
    brats_images, brats_masks = WORK / "brats" / "images", WORK / "brats" / "masks"
    brats_protector, ct_protector = WORK / "fit_brats" / "protector.json", WORK / "fit_ct" / "protector.json"
    if args.mark:
        brats_protector, ct_protector = Path("mark:1,3,4"), Path("mark:2")
    volumes = {}
    for case in BRATS_TRAIN:
        volumes[case] = _volume(
            "BraTS NIfTI float32 240x240x155",
            brats_images,
            brats_masks,
            case,
            brats_protector,
            BRATS / "t1c" / f"{case}.nii.gz",
        )
    dicom = WORK / "dicom"
    volumes[f"{DICOM_CASE}_dicom"] = _volume(
        "DICOM series int16 + slope 240x240x155 (155 files)",
        dicom / "images",
        dicom / "masks",
        DICOM_CASE,
        brats_protector,
        dicom / "images" / DICOM_CASE,
    )
    volumes["ct_phantom_000"] = _volume(
        "CT phantom NIfTI int16 512x512x400",
        WORK / "ct" / "images",
        WORK / "ct" / "masks",
        "phantom_000",
        ct_protector,
        WORK / "ct" / "images" / "phantom_000.nii.gz",
    )
    batch = {
        "1 worker (in process)": _subprocess(
            "batch", str(brats_images), str(brats_masks), str(brats_protector), "1", "-"
        ),
        "2 local workers (--workers 2)": _subprocess(
            "batch", str(brats_images), str(brats_masks), str(brats_protector), "2", "-"
        ),
        "2-worker Dask LocalCluster (--scheduler)": _subprocess(
            "batch", str(brats_images), str(brats_masks), str(brats_protector), "2", "cluster"
        ),
    }
    brats_ratios = [volumes[case]["apply_over_plain"] for case in BRATS_TRAIN]
    brats_marginal = [volumes[case]["marginal_over_plain"] for case in BRATS_TRAIN]
    path = write_result(
        "protect_speed_mark" if args.mark else "protect_speed",
        {
            "config": "the shipped default: the keyed mark (nothing fitted)" if args.mark else args.config,
            "prepare": prepared,
            "note": (
                "times depend on what else runs on the machine: the 1/5/15-minute load averages before and after are "
                "recorded below (a 2-worker phase itself raises them to about 2)"
            ),
            "load_average_before_after": [list(load_before), list(os.getloadavg())],
            "per_volume": volumes,
            "apply_over_plain_brats_median": statistics.median(brats_ratios),
            "marginal_over_plain_brats_median": statistics.median(brats_marginal),
            "marginal_over_plain_ct": volumes["ct_phantom_000"]["marginal_over_plain"],
            "batch_brats_6_volumes": batch,
            "goal": (
                "the marginal cost of applying (per case: hashing its inputs, its job, the manifest write after it) "
                "<= 2 x plain load + save per volume; peak memory <= 2 GB on the 512x512x400 int16 CT; the whole "
                "run on a one-case folder (apply_over_plain) adds the run's fixed costs"
            ),
        },
    )
    print(path)


if __name__ == "__main__":
    main()
