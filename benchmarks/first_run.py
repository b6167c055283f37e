"""The first command a user runs: ``umed protect`` with no ``--config`` on the four BraTS T1c training cases
(``--labels 1,3,4``), timed end to end (fit + apply, as a subprocess of the command line), and compared byte for byte
with the same command under ``--config brats_tumour_core`` (issue 12: the default must be those measured settings).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/first_run.py [--no-compare]

writes benchmarks/results/first_run.json (wall times, the machine's load average before and after, SHA-256 of every
output). Outputs go to benchmarks/runs/first_run/ (not committed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's umed (results record its versions)

from _common import BRATS, BRATS_TRAIN, ROOT, RUNS, link_cases, write_result  # noqa: E402

BUDGET_SECONDS = 300  # issue 12: fit + apply within 5 minutes on 2 cores


def _run(images: Path, masks: Path, out: Path, config: str | None) -> dict:
    """Run ``umed protect`` (this checkout's code) into a fresh ``out`` and time it."""
    shutil.rmtree(out, ignore_errors=True)
    command = [
        sys.executable,
        "-c",
        "from umed.cli import app; app()",
        "protect",
        str(images),
        "--masks",
        str(masks),
        "--out",
        str(out),
        "--labels",
        "1,3,4",
        "--key-out",  # one mark key for both runs, so the bytes can be compared (umed protect draws one otherwise)
        str(out.parent / "first_run.umed-key.json"),
    ] + (["--config", config] if config else [])
    load_before = os.getloadavg()
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    manifest = json.loads((out / "manifest.json").read_text()) if (out / "manifest.json").is_file() else {}
    protector = json.loads((out / "protector.json").read_text()) if (out / "protector.json").is_file() else {}

    return {
        "command": "umed " + " ".join(command[3:]).replace(str(ROOT) + "/", ""),
        "exit_code": done.returncode,
        "stderr_tail": done.stderr.strip().splitlines()[-5:],
        "wall_seconds": round(seconds, 1),
        "within_budget": seconds <= BUDGET_SECONDS,
        "training_seconds": protector.get("training_seconds"),
        "training_slices": protector.get("training_slices"),
        "load_average_1min_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "statuses": {case: entry.get("status") for case, entry in manifest.get("cases", {}).items()},
        "psnr": {
            case: round(entry["metrics"]["psnr"], 3)
            for case, entry in manifest.get("cases", {}).items()
            if "psnr" in entry.get("metrics", {})
        },
        "sha256": {
            path.name: hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(out.iterdir())
            if path.name.endswith((".nii.gz", ".pt"))
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-compare", action="store_true", help="Skip the --config brats_tumour_core run.")
    args = parser.parse_args()
    images, masks = link_cases(BRATS / "t1c", BRATS / "masks", BRATS_TRAIN, RUNS / "first_run" / "data")
    default = _run(images, masks, RUNS / "first_run" / "default", None)
    payload = {
        "cases": BRATS_TRAIN,
        "budget_seconds": BUDGET_SECONDS,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "default": default,
    }
    if not args.no_compare:
        brats = _run(images, masks, RUNS / "first_run" / "brats_tumour_core", "brats_tumour_core")
        payload["brats_tumour_core"] = brats
        payload["same_bytes_as_brats_tumour_core"] = bool(default["sha256"]) and default["sha256"] == brats["sha256"]
    payload["note"] = (
        "Measured on a shared 2-core machine with other jobs running (see the load averages): wall times "
        "are upper bounds for an idle machine."
    )
    path = write_result("first_run", payload)
    print(json.dumps(payload, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
