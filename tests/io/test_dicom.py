"""DICOM series: geometry in nibabel order (checked against SimpleITK), derived series written back, bad series."""

from __future__ import annotations

import hashlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from umed.errors import ConfigError, GeometryError, InputError
from umed.io import load_case, load_mask, make_dicom_series, quantize, save_case

LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
PATIENT_AND_STUDY_TAGS = (
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
    "FrameOfReferenceUID",
    "Modality",
)


def _sitk_affine(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Affine (RAS, nibabel order) and voxels ``(X, Y, Z)`` as SimpleITK reads the series."""
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    image = reader.Execute()
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    lps = np.eye(4)
    lps[:3, :3] = direction @ np.diag(image.GetSpacing())
    lps[:3, 3] = image.GetOrigin()
    voxels = np.transpose(sitk.GetArrayFromImage(image), (2, 1, 0))  # (Z, Y, X) -> (X, Y, Z)
    return LPS @ lps, voxels


def _digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(folder.iterdir()):
        digest.update(file.name.encode() + file.read_bytes())
    return digest.hexdigest()


def test_fixture_series_geometry_matches_simpleitk(dicom_series) -> None:
    folder, values, affine = dicom_series
    array, meta = load_case(folder)
    assert meta.format == "dicom" and meta.case_id == "series_a"
    assert array.shape == meta.shape == (12, 10, 3) and array.dtype == np.float64
    assert meta.disk_dtype == np.int16 and (meta.slope, meta.intercept) == (2.0, -100.0)
    np.testing.assert_array_equal(array, values)
    np.testing.assert_allclose(meta.affine, affine, atol=1e-6)
    np.testing.assert_allclose(meta.spacing, (0.8, 0.6, 3.0), atol=1e-6)
    sitk_affine, sitk_voxels = _sitk_affine(folder)
    np.testing.assert_allclose(meta.affine, sitk_affine, atol=1e-4)
    np.testing.assert_array_equal(array, sitk_voxels)
    assert len(meta.header) == 3 and "PixelData" not in meta.header[0]


def test_synthetic_series_has_the_required_tags(dicom_series) -> None:
    folder, _, _ = dicom_series
    files = sorted(folder.iterdir())
    assert [f.name for f in files] == ["IM00001.dcm", "IM00002.dcm", "IM00003.dcm"]
    ds = pydicom.dcmread(files[0])
    assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4"
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    for keyword in (
        "SOPClassUID",
        "SOPInstanceUID",
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "FrameOfReferenceUID",
        "Modality",
        "PatientID",
        "PatientName",
        "ImagePositionPatient",
        "ImageOrientationPatient",
        "PixelSpacing",
        "SliceThickness",
        "Rows",
        "Columns",
        "BitsAllocated",
        "BitsStored",
        "HighBit",
        "PixelRepresentation",
        "SamplesPerPixel",
        "PhotometricInterpretation",
        "RescaleSlope",
        "RescaleIntercept",
        "ImageType",
        "ScanningSequence",
        "SequenceVariant",
        "InstanceNumber",
        "SeriesNumber",
    ):
        assert keyword in ds, keyword
    assert ds.PatientID == "PAT-42" and ds.PixelRepresentation == 1 and ds.BitsAllocated == 16
    uids = {pydicom.dcmread(f).SOPInstanceUID for f in files}
    assert len(uids) == 3


@pytest.fixture(scope="module")
def brats_series(brats_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, np.ndarray]:
    """BraTS case 1, slices 60..79 (240 x 240 x 20), as int16 with slope 0.01, oblique 20 deg, 0.9 x 0.9 x 2.5 mm."""
    image, _ = load_case(brats_dir / "volumes" / "brats_2013_pat0001_1.nii.gz")
    crop = np.round(image[:, :, 60:80].astype(np.float64) * 100) / 100
    angle = np.deg2rad(20)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.9, 0.9, 2.5])
    affine[:3, 3] = (-110.0, -95.5, 30.25)
    folder = make_dicom_series(
        crop,
        affine,
        tmp_path_factory.mktemp("brats_dicom") / "brats_2013_pat0001_1",
        patient_id="BRATS-0001",
        slope=0.01,
    )
    return folder, crop, affine


def test_brats_series_round_trips_as_a_derived_series(brats_series, tmp_path: Path) -> None:
    folder, crop, affine = brats_series
    array, meta = load_case(folder)
    assert array.shape == (240, 240, 20)
    np.testing.assert_allclose(array, crop, atol=1e-9)
    np.testing.assert_allclose(meta.affine, affine, atol=1e-4)
    np.testing.assert_allclose(meta.spacing, (0.9, 0.9, 2.5), atol=1e-6)

    out = save_case(array, meta, tmp_path / "out" / folder.name)
    assert out == tmp_path / "out" / folder.name
    again, meta2 = load_case(out)
    assert again.tobytes() == array.tobytes()  # voxels identical
    np.testing.assert_allclose(meta2.affine, affine, atol=1e-4)
    assert meta2.disk_dtype == meta.disk_dtype and (meta2.slope, meta2.intercept) == (meta.slope, meta.intercept)
    old_sops = {ds.SOPInstanceUID for ds in meta.header}
    new_sops = {ds.SOPInstanceUID for ds in meta2.header}
    assert len(new_sops) == 20 and not new_sops & old_sops
    assert {ds.SeriesInstanceUID for ds in meta2.header} == {meta2.header[0].SeriesInstanceUID}
    assert meta2.header[0].SeriesInstanceUID != meta.header[0].SeriesInstanceUID
    for before, after in zip(meta.header, meta2.header):
        for tag in PATIENT_AND_STUDY_TAGS:
            assert after.get(tag) == before.get(tag), tag
        for tag in (
            "ImagePositionPatient",
            "ImageOrientationPatient",
            "PixelSpacing",
            "SliceThickness",
            "RescaleSlope",
            "RescaleIntercept",
            "BitsAllocated",
            "BitsStored",
            "PixelRepresentation",
            "InstanceNumber",
        ):
            assert after.get(tag) == before.get(tag), tag
        assert after.ImageType[0] == "DERIVED" and list(after.ImageType[1:]) == list(before.ImageType[1:])
        assert "umed" in after.DerivationDescription
        assert after.SourceImageSequence[0].ReferencedSOPInstanceUID == before.SOPInstanceUID
        assert after.file_meta.MediaStorageSOPInstanceUID == after.SOPInstanceUID
    assert _sitk_affine(out)[1].shape == (240, 240, 20)

    again_out = save_case(array, meta, tmp_path / "again" / folder.name)
    assert _digest(again_out) == _digest(out)  # UIDs are derived deterministically: same input, same bytes


def test_not_derived_keeps_uids(dicom_series, tmp_path: Path) -> None:
    folder, _, _ = dicom_series
    array, meta = load_case(folder)
    out = save_case(array, meta, tmp_path / "copy" / folder.name, derived=False)
    _, meta2 = load_case(out)
    assert [ds.SOPInstanceUID for ds in meta2.header] == [ds.SOPInstanceUID for ds in meta.header]
    assert meta2.header[0].ImageType[0] == "ORIGINAL"


def test_changed_values_are_quantised_to_the_rescale_step(dicom_series, tmp_path: Path) -> None:
    folder, values, _ = dicom_series
    array, meta = load_case(folder)
    changed = array + 0.7  # slope 2: not representable
    out = save_case(changed, meta, tmp_path / "out" / folder.name)
    back, _ = load_case(out)
    np.testing.assert_array_equal(back, quantize(changed, meta))
    assert np.abs(back - changed).max() <= 1.0 + 1e-9  # half a stored unit


def test_per_slice_rescale_and_narrow_bits_stored(dicom_series, tmp_path: Path) -> None:
    folder, values, _ = dicom_series
    files = sorted(folder.iterdir())
    ds = pydicom.dcmread(files[1])
    ds.RescaleSlope = 4  # this slice's stored values now mean twice as much
    ds.save_as(files[1])
    array, meta = load_case(folder)
    np.testing.assert_array_equal(array[..., 1], (values[..., 1] + 100) / 2 * 4 - 100)
    np.testing.assert_array_equal(quantize(array, meta), array)
    out = save_case(array, meta, tmp_path / "out" / folder.name)
    np.testing.assert_array_equal(load_case(out)[0], array)

    narrow = tmp_path / "narrow"
    make_dicom_series(np.zeros((4, 4, 2)), np.eye(4), narrow, dtype=np.uint16)
    for file in narrow.iterdir():
        ds = pydicom.dcmread(file)
        ds.BitsStored, ds.HighBit = 12, 11
        ds.save_as(file)
    array, meta = load_case(narrow)
    out = save_case(array + 5000, meta, tmp_path / "wide" / "narrow")  # needs more than 12 bits
    back, meta2 = load_case(out)
    np.testing.assert_array_equal(back, array + 5000)
    assert meta2.header[0].BitsStored == 16


def test_dicom_image_with_nifti_mask_is_compared_in_world_space(dicom_series, tmp_path: Path) -> None:
    folder, _, affine = dicom_series
    _, meta = load_case(folder)
    labels = np.zeros(meta.shape, np.uint8)
    labels[2:5, 3:7, 1] = 1
    good = tmp_path / "good.nii.gz"
    nib.save(nib.Nifti1Image(labels, meta.affine), good)
    loaded, _ = load_mask(good, image_meta=meta)
    np.testing.assert_array_equal(loaded, labels)

    flip = np.eye(4)
    flip[1, 1], flip[1, 3] = -1, meta.shape[1] - 1  # dcm2niix-style row flip: same voxels, other order
    flipped = tmp_path / "flipped.nii.gz"
    nib.save(nib.Nifti1Image(labels[:, ::-1, :].copy(), meta.affine @ flip), flipped)
    loaded, _ = load_mask(flipped, image_meta=meta)
    np.testing.assert_array_equal(loaded, labels)

    shifted_affine = meta.affine.copy()
    shifted_affine[:3, 3] += 0.5
    shifted = tmp_path / "shifted.nii.gz"
    nib.save(nib.Nifti1Image(labels, shifted_affine), shifted)
    with pytest.raises(GeometryError, match="affine differs") as error:
        load_mask(shifted, image_meta=meta)
    assert str(error.value).startswith(str(shifted))


def test_truncated_slice_names_the_file(dicom_series) -> None:
    folder, _, _ = dicom_series
    victim = sorted(folder.iterdir())[1]
    victim.write_bytes(victim.read_bytes()[:-57])
    with pytest.raises(InputError) as error:
        load_case(folder)
    assert str(error.value).startswith(f"{victim}: ")


def test_missing_slice_two_series_and_empty_folder(dicom_series, tmp_path: Path) -> None:
    folder, values, affine = dicom_series
    other = make_dicom_series(values[..., :2], affine, tmp_path / "other", patient_id="OTHER")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for source in (folder, other):
        for file in source.iterdir():
            (mixed / f"{source.name}_{file.name}").write_bytes(file.read_bytes())
    with pytest.raises(InputError, match="several DICOM series") as error:
        load_case(mixed)
    assert str(error.value).startswith(str(mixed))

    gap = tmp_path / "gap"
    make_dicom_series(np.zeros((4, 4, 4)), np.eye(4), gap)
    (gap / "IM00003.dcm").unlink()
    with pytest.raises(InputError, match="irregular slice spacing or missing slices"):
        load_case(gap)

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    with pytest.raises(InputError, match="no DICOM image file") as error:
        load_case(empty)
    assert str(error.value).startswith(str(empty))


def test_make_dicom_series_refuses_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected 3 dimensions"):
        make_dicom_series(np.zeros((4, 4)), np.eye(4), tmp_path / "a")
    with pytest.raises(ConfigError, match="integer"):
        make_dicom_series(np.zeros((4, 4, 2)), np.eye(4), tmp_path / "b", dtype=np.float32)
    sheared = np.eye(4)
    sheared[0, 1] = 0.5
    with pytest.raises(ConfigError, match="not orthogonal"):
        make_dicom_series(np.zeros((4, 4, 2)), sheared, tmp_path / "c")
    assert list(tmp_path.iterdir()) == []


def test_failed_series_save_leaves_the_old_series(dicom_series, tmp_path: Path, list_files) -> None:
    folder, _, _ = dicom_series
    array, meta = load_case(folder)
    target = tmp_path / "out" / folder.name
    save_case(array, meta, target)
    before = _digest(target)
    with pytest.raises(GeometryError):
        save_case(array[..., :2], meta, target)
    bad = array.copy()
    bad[0, 0, 0] = np.inf
    with pytest.raises(InputError, match="NaN or Inf"):
        save_case(bad, meta, target)
    assert _digest(target) == before
    assert list_files(tmp_path / "out") == [folder.name] + [f"{folder.name}/IM0000{i}.dcm" for i in (1, 2, 3)]


def test_quantize_slices_uses_each_slices_rescale(dicom_series) -> None:
    """Rounding a few slices of a series with per-slice rescale equals rounding the whole series."""
    from umed.io import quantize_slices

    folder, _, _ = dicom_series
    files = sorted(folder.iterdir())
    ds = pydicom.dcmread(files[1])
    ds.RescaleSlope = 4  # another rescale on slice 1 than on the others
    ds.save_as(files[1])
    array, meta = load_case(folder)
    changed = array.copy()
    changed[..., [0, 1]] += 1.3  # rounds to +2 with slope 2 (slice 0), to 0 with slope 4 (slice 1)
    expected = quantize(changed, meta)
    assert not np.array_equal(expected[..., 0] - array[..., 0], expected[..., 1] - array[..., 1])
    np.testing.assert_array_equal(quantize_slices(changed.copy(), meta, [[0, 1]]), expected)
