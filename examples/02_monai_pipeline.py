"""Protect images inside a MONAI pipeline with ``UMedProtectd``, and check it writes what ``umed protect`` writes.

    python examples/02_monai_pipeline.py [OUT]      (OUT defaults to a new temporary folder)

1. makes 4 synthetic 3D phantoms (NIfTI; two float32, two int16 with scl_slope/scl_inter);
2. fits a tiny UMed protector once with :func:`umed.protect.protect_dataset` (what ``umed protect`` runs), which also
   writes the protected copy and ``protector.json``;
3. runs LoadImaged -> EnsureChannelFirstd -> UMedProtectd(protector.json) -> SaveImaged over the phantom folder;
4. compares each file the pipeline wrote with the CLI's, in file units.

No download; well under a minute on 2 CPU cores. The phantoms are not real data.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
from monai.data import Dataset
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, SaveImaged

from umed.io import discover_cases
from umed.phantom import make_phantom_dataset
from umed.protect import protect_dataset
from umed.settings import ProtectConfig
from umed.transforms import UMedProtectd

FAST_UMED = {"steps": 20, "batch_size": 4, "crop": 32, "base_channels": 4, "saturation": 1.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, help="output folder (default: a new temporary folder)")
    out = parser.parse_args().out or Path(tempfile.mkdtemp(prefix="umed-example-02."))
    out.mkdir(parents=True, exist_ok=True)

    images, masks = make_phantom_dataset(out / "phantoms", n_cases=4, ndim=3, shape=(48, 48, 12), seed=0)
    print(f"1. phantoms: {images} (labels in {masks})")

    cfg = ProtectConfig(
        images=images,
        masks=masks,
        out=out / "cli",
        method="umed",
        seed=0,
        target_psnr=50.0,
        method_settings=FAST_UMED,
        mark=False,  # a fitted protector (the shipped mark alone would take the whole budget: nothing to fit)
    )
    summary = protect_dataset(cfg)
    print(f"2. protect_dataset fitted {summary.protector_path} and wrote {len(summary.results)} cases to {cfg.out}")

    pipeline = Compose(
        [
            # NibabelReader keeps nibabel's axis order (X, Y, Z), as umed.io.load_case does; no reorientation.
            LoadImaged(keys=["image", "label"], reader="NibabelReader", image_only=True),
            EnsureChannelFirstd(keys=["image", "label"]),
            # disk_dtype="source": truncate each change to what the source file stores (int16 x scl_slope), as
            # the CLI does; for float files the default (None) is already exact.
            UMedProtectd(keys="image", protector=summary.protector_path, label_key="label", disk_dtype="source"),
            SaveImaged(
                keys="image",
                output_dir=out / "monai",
                output_postfix="",
                separate_folder=False,
                output_dtype=np.float32,
                resample=False,
                print_log=False,
            ),
        ]
    )
    cases = discover_cases(images, masks)
    dataset = Dataset([{"image": str(case.image_path), "label": str(case.mask_path)} for case in cases], pipeline)
    for index in range(len(dataset)):
        dataset[index]  # each item is loaded, protected and saved
    print(f"3. the MONAI pipeline wrote {len(cases)} cases to {out / 'monai'}")

    print("4. pipeline output vs umed protect output (file units):")
    all_equal = True
    for case in cases:
        monai_values = nib.load(str(out / "monai" / case.image_path.name)).get_fdata(dtype=np.float64)
        cli_values = nib.load(str(cfg.out / case.image_path.name)).get_fdata(dtype=np.float64)
        clean_values = nib.load(str(case.image_path)).get_fdata(dtype=np.float64)
        equal = np.array_equal(monai_values, cli_values)
        all_equal &= equal
        changed = int((monai_values != clean_values).sum())
        print(f"   {case.case_id}: {'identical' if equal else 'DIFFERENT'}, {changed} voxels changed")
    print("   all identical" if all_equal else "   some cases differ")
    if not all_equal:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
