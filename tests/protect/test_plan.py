"""One resume key decides protector reuse and case skipping; an OUT written with other settings is refused
(umed.protect.plan through umed.protect.protect_dataset, on real BraTS crops)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from umed.errors import ConfigError
from umed.io.provenance import sha256_file
from umed.protect import protect_dataset

CASE_A, CASE_B = "brats_2013_pat0003_1", "brats_2013_pat0004_1"


def _statuses(summary) -> dict[str, str]:
    return {result.case_id: result.status for result in summary.results}


def _relabel(mask_path: Path, old: int, new: int) -> None:
    """Correct a mask as a user would: rewrite it with one label changed."""
    image = nib.load(mask_path)
    labels = np.asarray(image.dataobj).copy()
    assert (labels == old).any()
    labels[labels == old] = new
    nib.save(nib.Nifti1Image(labels, image.affine, image.header), mask_path)


def _consistent(out: Path) -> None:
    """Manifest, protector and files agree: one key, and every recorded SHA-256 is the file's."""
    manifest = json.loads((out / "manifest.json").read_text())
    protector = json.loads((out / "protector.json").read_text())
    assert manifest["resume_key_sha256"] == protector["resume_key_sha256"]
    assert protector["weights_sha256"] == sha256_file(out / "protector.pt")
    for entry in manifest["cases"].values():
        assert sha256_file(out / entry["output"]) == entry["output_sha256"]


def test_corrected_mask_of_a_training_case_is_refused_then_overwritten(data, config, tmp_path: Path) -> None:
    images, masks = data
    out = tmp_path / "out"
    protect_dataset(config(images, masks, out))
    _relabel(masks / f"{CASE_A}.nii.gz", 4, 1)
    with pytest.raises(ConfigError, match="changed: training cases"):
        protect_dataset(config(images, masks, out))
    summary = protect_dataset(config(images, masks, out), overwrite=True)
    assert _statuses(summary) == {CASE_A: "protected", CASE_B: "protected"}
    trained = json.loads((out / "protector.json").read_text())["training_data"]
    assert [CASE_A, sha256_file(images / f"{CASE_A}.nii.gz"), sha256_file(masks / f"{CASE_A}.nii.gz")] in trained
    _consistent(out)


def test_corrected_mask_of_an_applied_case_is_protected_again(data, config, tmp_path: Path) -> None:
    images, masks = data
    out = tmp_path / "out"
    protect_dataset(config(images, masks, out, fit_cases=(CASE_A,)))
    before = (out / f"{CASE_B}.nii.gz").read_bytes()
    _relabel(masks / f"{CASE_B}.nii.gz", 4, 0)  # the corrected mask no longer calls these voxels tumour
    summary = protect_dataset(config(images, masks, out, fit_cases=(CASE_A,)))
    assert _statuses(summary) == {CASE_A: "skipped", CASE_B: "protected"}
    assert (out / f"{CASE_B}.nii.gz").read_bytes() != before
    _consistent(out)


@pytest.mark.slow
@pytest.mark.parametrize(
    "change, named",
    [
        ({"structure_labels": (1, 3, 4)}, "structure_labels"),
        ({"eps_cap": 12 / 255}, "eps_cap"),
        ({"intensity_mode": "window", "window": (-1.0, 4.0)}, "intensity_mode"),
        ({"seed": 2}, "protector.seed"),
        ({"band_width": 2}, "protector.budget"),
    ],
)
def test_changed_setting_in_an_existing_out_is_refused_never_mixed(data, config, tmp_path: Path, change, named) -> None:
    images, masks = data
    out = tmp_path / "out"
    protect_dataset(config(images, masks, out))
    first = {path.name: path.read_bytes() for path in out.iterdir()}
    with pytest.raises(ConfigError, match=f"changed: .*{named}.*--overwrite"):
        protect_dataset(config(images, masks, out, **change))
    assert {path.name: path.read_bytes() for path in out.iterdir()} == first, "a refused run changed OUT"
    summary = protect_dataset(config(images, masks, out, **change), overwrite=True)
    assert set(_statuses(summary).values()) == {"protected"}
    _consistent(out)


def test_removed_case_output_is_warned_about(data, config, tmp_path: Path) -> None:
    images, masks = data
    out = tmp_path / "out"
    protect_dataset(config(images, masks, out, fit_cases=(CASE_A,)))
    (images / f"{CASE_B}.nii.gz").unlink()
    (masks / f"{CASE_B}.nii.gz").unlink()
    summary = protect_dataset(config(images, masks, out, fit_cases=(CASE_A,)))
    warnings = json.loads(summary.manifest_path.read_text())["warnings"]
    assert any(f"{CASE_B}.nii.gz: output of case {CASE_B}, which is no longer in the input" in w for w in warnings)


@pytest.mark.slow
def test_protector_bytes_are_the_same_in_two_runs(data, config, tmp_path: Path) -> None:
    images, masks = data
    protect_dataset(config(images, masks, tmp_path / "one"))
    protect_dataset(config(images, masks, tmp_path / "two"))
    assert (tmp_path / "one" / "protector.pt").read_bytes() == (tmp_path / "two" / "protector.pt").read_bytes()
    one = json.loads((tmp_path / "one" / "protector.json").read_text())
    two = json.loads((tmp_path / "two" / "protector.json").read_text())
    assert one["weights_sha256"] == two["weights_sha256"]
