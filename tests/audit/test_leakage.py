"""umed.audit.leakage: the audit warns about a test case that fitted the protector or is a training case under
another name (on phantoms protected by umed.protect.protect_dataset)."""

from __future__ import annotations

import shutil
from pathlib import Path

from umed.audit.leakage import leakage_warnings
from umed.io import discover_cases
from umed.phantom import make_phantom_dataset
from umed.protect import protect_dataset


def test_audit_warns_about_a_test_case_that_fitted_the_protector_or_is_duplicated(config, tmp_path: Path) -> None:
    images, masks = make_phantom_dataset(tmp_path / "data", n_cases=3, ndim=3, shape=(40, 40, 6), seed=2)
    out = tmp_path / "out"
    protect_dataset(config(images, masks, out, fit_cases=("phantom_000", "phantom_001")))
    pairs = [(case, out / case.image_path.name) for case in discover_cases(images, masks)]
    assert leakage_warnings(out, pairs, ["phantom_002"]) == []
    warned = leakage_warnings(out, pairs, ["phantom_001"])
    assert len(warned) == 1 and "test case(s) ['phantom_001'] were used to fit the protector" in warned[0]

    shutil.copy(images / "phantom_000.nii.gz", images / "phantom_009.nii.gz")
    shutil.copy(masks / "phantom_000.nii.gz", masks / "phantom_009.nii.gz")
    pairs = [(case, out / case.image_path.name) for case in discover_cases(images, masks)]
    warned = leakage_warnings(out, pairs, ["phantom_009"])
    assert len(warned) == 1 and "['phantom_000', 'phantom_009'] have the same image bytes" in warned[0]
