"""Shared helpers of the benchmark scripts: data locations, the BraTS/ISBI splits, result writing."""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
#: The data root: $UMED_DATA, or ../shared/data beside the repository.
DATA_ROOT = Path(os.environ.get("UMED_DATA", ROOT.parent / "shared" / "data")).resolve()
RESULTS = BENCHMARKS / "results"
RUNS = BENCHMARKS / "runs"  # large outputs (protected data, reports): not committed


@dataclass(frozen=True)
class Task:
    """One benchmark task of benchmarks/tasks.yaml: where its images and masks are, its split and its labels."""

    name: str
    description: str
    images: Path
    masks: Path
    suffix: str
    labels: tuple[int, ...] | None
    train: tuple[str, ...]
    test: tuple[str, ...]


def load_tasks() -> dict[str, Task]:
    """Every task of benchmarks/tasks.yaml, folders resolved under :data:`DATA_ROOT`."""
    doc = yaml.safe_load((BENCHMARKS / "tasks.yaml").read_text())
    return {
        name: Task(
            name=name,
            description=spec["description"],
            images=DATA_ROOT / spec["images"],
            masks=DATA_ROOT / spec["masks"],
            suffix=spec["suffix"],
            labels=tuple(spec["labels"]) if spec["labels"] is not None else None,
            train=tuple(str(c) for c in spec["train"]),
            test=tuple(str(c) for c in spec["test"]),
        )
        for name, spec in doc.items()
    }


TASKS = load_tasks()
BRATS = DATA_ROOT / "brats2015"
ISBI = DATA_ROOT / "isbi2012"
BRATS_TRAIN = list(TASKS["brats_core"].train)
BRATS_TEST = list(TASKS["brats_core"].test)
ISBI_TRAIN = list(TASKS["isbi"].train)
ISBI_TEST = list(TASKS["isbi"].test)


def portable(value: Any) -> Any:
    """``value`` with every absolute path under the repository or the data root made relative: results and reports
    committed to the repository never hold the paths of the machine that ran them (``$UMED_DATA/...`` for data,
    paths relative to benchmarks/ for everything else)."""
    if isinstance(value, dict):
        return {key: portable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable(item) for item in value]
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, str) and value.startswith("/"):
        for base, label in ((DATA_ROOT, "$UMED_DATA"), (BENCHMARKS, None), (ROOT, "..")):
            try:
                relative = Path(value).relative_to(base).as_posix()
            except ValueError:
                continue
            return f"{label}/{relative}" if label else relative
    return value


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
    from umed.protect.protector_io import package_versions, write_json_atomic

    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    write_json_atomic(
        portable({"benchmark": name, "machine": machine(), "versions": package_versions(), **payload}), path
    )
    return path


def link_cases(
    source_images: Path, source_masks: Path, cases: list[str], target: Path, suffix: str = ".nii.gz"
) -> tuple[Path, Path]:
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
