"""Finding cases: folder pairs, nnU-Net raw and Decathlon layouts; output location rules."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile
from PIL import Image

from umed.case import Case
from umed.errors import ConfigError, InputError
from umed.io import check_output_location, discover_cases, load_case, make_dicom_series, output_path_for


def _nifti(path: Path, shape=(4, 4, 3)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.zeros(shape, np.float32), np.eye(4)), path)
    return path


def _png(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(path)
    return path


def test_brats_layout_pairs_every_case(brats_dir: Path) -> None:
    cases = discover_cases(brats_dir / "volumes", brats_dir / "masks")
    assert [c.case_id for c in cases] == [f"brats_2013_pat000{i}_1" for i in range(1, 7)]
    for case in cases:
        assert case.image_path == brats_dir / "volumes" / f"{case.case_id}.nii.gz"
        assert case.mask_path == brats_dir / "masks" / f"{case.case_id}.nii.gz"


def test_isbi_layout(isbi_dir: Path) -> None:
    cases = discover_cases(isbi_dir / "images", isbi_dir / "masks")
    assert len(cases) == 30 and all(c.mask_path is not None for c in cases)
    assert [c.case_id for c in cases] == sorted(c.case_id for c in cases)


def test_folder_pairs_ignore_extensions_and_channel_suffix(tmp_path: Path) -> None:
    images, masks = tmp_path / "images", tmp_path / "masks"
    _nifti(images / "alpha_0000.nii.gz")
    _nifti(masks / "alpha.nii")
    _png(images / "beta.png")
    tifffile.imwrite(masks / "beta.tif", np.zeros((4, 4), np.uint8))
    _nifti(images / "gamma.nii")
    make_dicom_series(np.zeros((4, 4, 2)), np.eye(4), images / "delta")
    _nifti(masks / "delta.nii.gz", (4, 4, 2))
    (images / "notes.txt").write_text("ignored")
    (images / ".hidden.nii.gz").write_bytes(b"")
    cases = discover_cases(images, masks)
    assert cases == [
        Case("alpha", images / "alpha_0000.nii.gz", masks / "alpha.nii"),
        Case("beta", images / "beta.png", masks / "beta.tif"),
        Case("delta", images / "delta", masks / "delta.nii.gz"),
        Case("gamma", images / "gamma.nii", None),  # missing mask: reported by validation
    ]


def test_ids_with_four_digits_are_not_mistaken_for_channels(tmp_path: Path) -> None:
    images, masks = tmp_path / "images", tmp_path / "masks"
    for name in ("case_0001", "case_0002", "case_0003"):
        _nifti(images / f"{name}.nii.gz")
    _nifti(masks / "case_0001.nii.gz")
    _nifti(masks / "case_0002.nii.gz")
    cases = discover_cases(images, masks)
    assert [(c.case_id, c.mask_path.name if c.mask_path else None) for c in cases] == [
        ("case_0001", "case_0001.nii.gz"),
        ("case_0002", "case_0002.nii.gz"),
        ("case_0003", None),
    ]


def test_nnunet_raw_layout(tmp_path: Path) -> None:
    root = tmp_path / "Dataset001_Test"
    for case in ("liver_001", "liver_002"):
        _nifti(root / "imagesTr" / f"{case}_0000.nii.gz")
        _nifti(root / "labelsTr" / f"{case}.nii.gz")
    _nifti(root / "imagesTr" / "liver_003_0000.nii.gz")
    (root / "dataset.json").write_text(
        json.dumps(
            {
                "channel_names": {"0": "CT"},
                "labels": {"background": 0, "liver": 1},
                "numTraining": 3,
                "file_ending": ".nii.gz",
            }
        )
    )
    cases = discover_cases(root)
    assert [(c.case_id, c.mask_path) for c in cases] == [
        ("liver_001", root / "labelsTr" / "liver_001.nii.gz"),
        ("liver_002", root / "labelsTr" / "liver_002.nii.gz"),
        ("liver_003", None),
    ]


def test_nnunet_several_channels_share_the_mask(tmp_path: Path) -> None:
    root = tmp_path / "Dataset002_Brain"
    for channel in ("0000", "0001"):
        _nifti(root / "imagesTr" / f"brain_001_{channel}.nii.gz")
    _nifti(root / "labelsTr" / "brain_001.nii.gz")
    (root / "dataset.json").write_text("{}")
    cases = discover_cases(root)
    assert [c.case_id for c in cases] == ["brain_001_0000", "brain_001_0001"]
    assert {c.mask_path for c in cases} == {root / "labelsTr" / "brain_001.nii.gz"}


def test_decathlon_layout(tmp_path: Path) -> None:
    root = tmp_path / "Task02_Heart"
    for case in ("la_003", "la_004"):
        _nifti(root / "imagesTr" / f"{case}.nii.gz")
        _nifti(root / "labelsTr" / f"{case}.nii.gz")
    _nifti(root / "imagesTs" / "la_001.nii.gz")
    (root / "imagesTr" / "._la_003.nii.gz").write_bytes(b"macOS metadata")
    document = {
        "name": "LeftAtrium",
        "training": [
            {"image": "./imagesTr/la_004.nii.gz", "label": "./labelsTr/la_004.nii.gz"},
            {"image": "./imagesTr/la_003.nii.gz", "label": "./labelsTr/la_003.nii.gz"},
        ],
        "test": ["./imagesTs/la_001.nii.gz"],
    }
    (root / "dataset.json").write_text(json.dumps(document))
    cases = discover_cases(root)
    assert [c.case_id for c in cases] == ["la_003", "la_004"]
    assert cases[0].image_path == (root / "imagesTr" / "la_003.nii.gz").resolve()
    assert cases[0].mask_path == (root / "labelsTr" / "la_003.nii.gz").resolve()


def test_single_dicom_series_folder(dicom_series) -> None:
    folder, _, _ = dicom_series
    assert discover_cases(folder) == [Case("series_a", folder, None)]


def test_missing_empty_and_ambiguous_folders(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="images folder not found") as error:
        discover_cases(tmp_path / "nope")
    assert str(error.value).startswith(str(tmp_path / "nope"))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.md").write_text("nothing")
    with pytest.raises(InputError, match="no images") as error:
        discover_cases(empty)
    assert str(error.value).startswith(str(empty))
    with pytest.raises(InputError, match="masks folder not found"):
        discover_cases(empty, tmp_path / "no_masks")
    twice = tmp_path / "twice"
    _nifti(twice / "a.nii.gz")
    _nifti(twice / "a.nii")
    with pytest.raises(InputError, match="two images for case a"):
        discover_cases(twice)


def test_check_output_location(tmp_path: Path) -> None:
    images, masks = tmp_path / "data" / "images", tmp_path / "data" / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    for bad in (images, images / "protected", masks / "a" / "b", tmp_path / "data" / "images" / ".." / "images"):
        with pytest.raises(ConfigError, match="inside the input folder") as error:
            check_output_location(bad, [images, masks])
        assert str(error.value).startswith(str(bad))
    check_output_location(tmp_path / "data" / "protected", [images, masks])
    check_output_location(tmp_path / "images_protected", [images, masks])  # a prefix of the name is not inside


def test_output_path_keeps_the_name(dicom_series, nifti_float, tmp_path: Path) -> None:
    folder, _, _ = dicom_series
    _, meta = load_case(folder)
    assert output_path_for(Case("series_a", folder, None), meta, tmp_path / "out") == tmp_path / "out" / "series_a"
    _, meta = load_case(nifti_float.image)
    case = Case("case_a", nifti_float.image, nifti_float.mask)
    assert output_path_for(case, meta, tmp_path / "out") == tmp_path / "out" / "case_a.nii.gz"


def test_atomic_writers_clean_up_after_a_failure(tmp_path: Path, list_files) -> None:
    from umed.io import atomic_dir, atomic_file

    target = tmp_path / "out" / "case.nii.gz"
    with atomic_file(target) as temp:
        temp.write_bytes(b"first")
    with pytest.raises(RuntimeError):
        with atomic_file(target) as temp:
            temp.write_bytes(b"half")
            raise RuntimeError("disk full")
    assert target.read_bytes() == b"first"
    series = tmp_path / "out" / "series"
    with atomic_dir(series) as temp:
        (temp / "IM1.dcm").write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_dir(series) as temp:
            (temp / "IM1.dcm").write_bytes(b"new")
            raise RuntimeError("interrupted")
    assert (series / "IM1.dcm").read_bytes() == b"old"
    with atomic_dir(series) as temp:
        (temp / "IM2.dcm").write_bytes(b"new")
    assert list_files(tmp_path / "out") == ["case.nii.gz", "series", "series/IM2.dcm"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # usual mode, not the temporary file's 0o600
