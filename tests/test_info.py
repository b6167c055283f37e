"""dataset_info: one CaseInfo per case, errors recorded per case, real data described correctly."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from umed.errors import InputError
from umed.info import CaseInfo, dataset_info
from umed.phantom import make_phantom_dataset


@pytest.fixture
def phantom(tmp_path: Path) -> tuple[Path, Path]:
    return make_phantom_dataset(tmp_path / "phantom", n_cases=3, shape=(32, 32, 8))


def test_phantom_dataset_is_described(phantom) -> None:
    infos = dataset_info(*phantom)
    assert [i.case_id for i in infos] == ["phantom_000", "phantom_001", "phantom_002"]
    first = infos[0]
    assert isinstance(first, CaseInfo) and first.ok and first.warnings == ()
    assert (first.format, first.shape, first.dtype) == ("nifti", (32, 32, 8), "float32")
    assert first.spacing == pytest.approx((0.8, 0.8, 2.5))
    assert first.labels == (0, 1, 2) and 0 < first.foreground_fraction < 0.5
    assert first.intensity_min < first.intensity_max
    assert (infos[1].dtype, infos[1].slope, infos[1].intercept) == ("int16", 0.25, -100.0)
    document = json.loads(json.dumps(first.to_dict()))
    assert document["shape"] == [32, 32, 8] and document["image_path"].endswith("phantom_000.nii.gz")


def test_bad_cases_are_recorded_and_the_rest_described(phantom) -> None:
    images, masks = phantom
    (masks / "phantom_001.nii.gz").write_bytes(b"broken")
    (masks / "phantom_002.nii.gz").unlink()
    affine = nib.load(images / "phantom_000.nii.gz").affine
    nib.save(nib.Nifti1Image(np.zeros((32, 32, 8), np.uint8), affine), masks / "phantom_000.nii.gz")
    infos = {i.case_id: i for i in dataset_info(images, masks)}
    assert infos["phantom_000"].ok and infos["phantom_000"].labels == (0,)
    assert "empty mask" in infos["phantom_000"].warnings[0]
    assert infos["phantom_001"].error.startswith(str(masks / "phantom_001.nii.gz"))
    assert infos["phantom_001"].shape == (32, 32, 8)  # the image was read before the mask failed
    assert "missing mask" in infos["phantom_002"].error


def test_images_without_masks_are_not_errors(phantom) -> None:
    infos = dataset_info(phantom[0])
    assert all(i.ok and i.mask_path is None and i.labels is None for i in infos)


def test_real_brats_case_info(brats_dir: Path, tmp_path: Path) -> None:
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    name = "brats_2013_pat0001_1.nii.gz"
    (images / name).symlink_to(brats_dir / "volumes" / name)
    (masks / name).symlink_to(brats_dir / "masks" / name)
    (info,) = dataset_info(images, masks)
    assert info.ok and info.shape == (240, 240, 155) and info.dtype == "float32" and info.spacing == (1.0, 1.0, 1.0)
    assert set(info.labels) <= {0, 1, 2, 3, 4} and 0.007 <= info.foreground_fraction <= 0.024


def test_missing_folder_raises(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        dataset_info(tmp_path / "nothing")
