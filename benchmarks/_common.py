"""Shared helpers of the benchmark scripts: data locations, the BraTS/ISBI splits, result writing."""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
BRATS = SHARED / "brats2015"
ISBI = SHARED / "isbi2012"
RESULTS = ROOT / "benchmarks" / "results"
RUNS = ROOT / "benchmarks" / "runs"  # large outputs (protected data, reports): not committed

BRATS_TRAIN = ["brats_2013_pat0003_1", "brats_2013_pat0004_1", "brats_2013_pat0005_1", "brats_2013_pat0006_1"]
BRATS_TEST = ["brats_2013_pat0001_1", "brats_2013_pat0002_1"]
ISBI_TRAIN = [str(i) for i in range(24)]
ISBI_TEST = [str(i) for i in range(24, 30)]


def machine() -> dict[str, Any]:
    """Facts about the machine a result was measured on."""
    import torch

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_result(name: str, payload: dict[str, Any]) -> Path:
    """Write benchmarks/results/NAME.json with the machine facts and umed's versions."""
    from umed.protector_io import package_versions, write_json_atomic

    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    write_json_atomic({"benchmark": name, "machine": machine(), "versions": package_versions(), **payload}, path)
    return path


def link_cases(source_images: Path, source_masks: Path, cases: list[str], target: Path, suffix: str = ".nii.gz") -> tuple[Path, Path]:
    """Make TARGET/images and TARGET/masks holding symlinks to the chosen cases (inputs are never copied or changed)."""
    images, masks = target / "images", target / "masks"
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    for case in cases:
        for folder, source in ((images, source_images), (masks, source_masks)):
            link = folder / f"{case}{suffix}"
            if not link.exists():
                link.symlink_to(source / f"{case}{suffix}")
    return images, masks
