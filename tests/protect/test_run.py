"""umed.protect on real files: a BraTS case (NIfTI float32) and a DICOM series made from one (int16 + slope)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from umed.errors import ConfigError
from umed.intensity import fit_mapping
from umed.io import load_case, load_mask, make_dicom_series
from umed.protect import protect_dataset
from umed.protectors import PROTECTORS
from umed.regions import foreground, support
from umed.settings import ProtectConfig

BRATS = Path(__file__).resolve().parents[3] / "shared" / "data" / "brats2015"
TRAIN_CASE = "brats_2013_pat0003_1"
TINY_UMED = {"steps": 2, "crop": 32, "batch_size": 2, "base_channels": 4}


def _slice_support(labels: np.ndarray, band_width: int) -> np.ndarray:
    """Structure plus its contour band, per axial slice, as the protector sees it."""
    structure = foreground(labels)
    return np.stack([support(structure[..., z], band_width) for z in range(structure.shape[-1])], axis=-1)


@pytest.fixture(scope="module")
def brats_two_cases(tmp_path_factory: pytest.TempPathFactory, brats_dir: Path) -> tuple[Path, Path]:
    """Two real BraTS T1c cases cut to the 24 axial slices around the tumour centre (fast), written as NIfTI."""
    root = tmp_path_factory.mktemp("brats")
    images, masks = root / "images", root / "masks"
    images.mkdir(), masks.mkdir()
    for case in (TRAIN_CASE, "brats_2013_pat0004_1"):
        image = nib.load(BRATS / "t1c" / f"{case}.nii.gz")
        mask = nib.load(BRATS / "masks" / f"{case}.nii.gz")
        z = int(np.flatnonzero(np.asarray(mask.dataobj).any(axis=(0, 1))).mean())
        nib.save(image.slicer[:, :, z - 12 : z + 12], images / f"{case}.nii.gz")
        nib.save(mask.slicer[:, :, z - 12 : z + 12], masks / f"{case}.nii.gz")
    return images, masks


def _config(images: Path, masks: Path, out: Path, **overrides) -> ProtectConfig:
    values = dict(
        images=images, masks=masks, out=out, method="umed", seed=3, target_psnr=50.0, method_settings=TINY_UMED
    )
    values["mark"] = False  # the protector's runs (the mark: tests/verify)
    values.update(overrides)
    return ProtectConfig(**values)


@pytest.mark.slow
@pytest.mark.usefixtures("brats_dir")  # fails when ../shared/data is missing (see tests/conftest.py)
def test_protect_real_brats_case_keeps_geometry_budget_and_support(tmp_path: Path) -> None:
    """A full 240x240x155 BraTS volume: same header, |change| <= eps, nothing outside the support, PSNR >= 50 dB."""
    images, masks = tmp_path / "in" / "t1c", tmp_path / "in" / "masks"
    images.mkdir(parents=True), masks.mkdir(parents=True)
    for folder, source in ((images, "t1c"), (masks, "masks")):
        (folder / f"{TRAIN_CASE}.nii.gz").symlink_to(BRATS / source / f"{TRAIN_CASE}.nii.gz")
    out = tmp_path / "out"
    summary = protect_dataset(_config(images, masks, out, method_settings={**TINY_UMED, "steps": 1}))
    assert [r.status for r in summary.results] == ["protected"]

    original, meta = load_case(BRATS / "t1c" / f"{TRAIN_CASE}.nii.gz")
    protected, out_meta = load_case(out / f"{TRAIN_CASE}.nii.gz")
    labels, _ = load_mask(BRATS / "masks" / f"{TRAIN_CASE}.nii.gz")
    assert out_meta.header.binaryblock == meta.header.binaryblock
    assert protected.dtype == original.dtype and protected.shape == original.shape
    np.testing.assert_array_equal(out_meta.affine, meta.affine)

    entry = json.loads(summary.manifest_path.read_text())["cases"][TRAIN_CASE]
    mapping = fit_mapping(original)
    change = np.abs(protected.astype(np.float64) - original) / (mapping.high - mapping.low)
    assert change.max() <= entry["eps"] + 1e-6
    assert change.max() > 0, "the protector changed nothing"
    assert not change[~_slice_support(labels, 3)].any()
    assert entry["metrics"]["psnr"] >= 50.0
    # the per-case rule spends the budget: PSNR is the target (float32 storage), unless the cap on eps binds
    assert entry["metrics"]["psnr"] == pytest.approx(50.0, abs=0.01) or entry["eps"] == pytest.approx(16 / 255)
    assert entry["metrics"]["ssim"] >= 0.99
    mse = float((change**2).mean())
    assert entry["metrics"]["psnr"] == pytest.approx(10 * np.log10(1 / mse), rel=1e-6)


def test_protect_dicom_series_keeps_tags_and_budget_after_quantisation(
    brats_two_cases: tuple[Path, Path], tmp_path: Path
) -> None:
    """A DICOM series (oblique, anisotropic, int16 + slope) made from a BraTS case, with a NIfTI mask."""
    images, masks = brats_two_cases
    array, meta = load_case(images / f"{TRAIN_CASE}.nii.gz")
    angle = np.deg2rad(20)
    affine = np.array(
        [
            [0.9 * np.cos(angle), -0.9 * np.sin(angle), 0, -100],
            [0.9 * np.sin(angle), 0.9 * np.cos(angle), 0, -90],
            [0, 0, 2.5, 20],
            [0, 0, 0, 1],
        ]
    )
    dicom_images, nifti_masks = tmp_path / "dicom", tmp_path / "masks"
    nifti_masks.mkdir()
    scaled = np.round(array * 100).astype(np.float64) / 100  # representable with slope 0.01
    make_dicom_series(scaled, affine, dicom_images / TRAIN_CASE, dtype=np.int16, slope=0.01, intercept=0.0)
    labels = np.asarray(nib.load(masks / f"{TRAIN_CASE}.nii.gz").dataobj).astype(np.int16)
    nib.save(nib.Nifti1Image(labels, affine), nifti_masks / f"{TRAIN_CASE}.nii.gz")

    out = tmp_path / "out"
    summary = protect_dataset(_config(dicom_images, nifti_masks, out))
    assert [r.status for r in summary.results] == ["protected"], summary.results
    original, in_meta = load_case(dicom_images / TRAIN_CASE)
    protected, out_meta = load_case(out / TRAIN_CASE)
    np.testing.assert_allclose(out_meta.affine, in_meta.affine, atol=1e-4)
    assert out_meta.disk_dtype == in_meta.disk_dtype == np.int16
    first_in, first_out = in_meta.header[0], out_meta.header[0]
    for tag in ("PatientID", "PatientName", "StudyInstanceUID", "StudyDate"):
        assert getattr(first_out, tag, None) == getattr(first_in, tag, None)
    assert first_out.SeriesInstanceUID != first_in.SeriesInstanceUID
    assert first_out.SOPInstanceUID != first_in.SOPInstanceUID
    assert first_out.ImageType[0] == "DERIVED"

    mapping = fit_mapping(original)
    change = np.abs(protected - original) / (mapping.high - mapping.low)
    entry = json.loads(summary.manifest_path.read_text())["cases"][TRAIN_CASE]
    assert 0 < change.max() <= entry["eps"] + 1e-9
    assert not change[~_slice_support(labels, 3)].any()
    assert entry["metrics"]["psnr"] >= 50.0


@pytest.mark.slow
def test_same_seed_same_bytes_and_resume_after_interruption(brats_two_cases: tuple[Path, Path], tmp_path: Path) -> None:
    images, masks = brats_two_cases
    whole = protect_dataset(_config(images, masks, tmp_path / "whole"))
    again = protect_dataset(_config(images, masks, tmp_path / "again"))

    class Interrupt(Exception):
        pass

    def stop_after_first_case(description: str, completed: int, total: int) -> None:
        if description == "protecting cases" and completed == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        protect_dataset(_config(images, masks, tmp_path / "resumed"), progress=stop_after_first_case)
    written = sorted(p.name for p in (tmp_path / "resumed").glob("*.nii.gz"))
    assert len(written) == 1, written
    resumed = protect_dataset(_config(images, masks, tmp_path / "resumed"))
    assert sorted(r.status for r in resumed.results) == ["protected", "skipped"]

    for run in (again, resumed):
        for result in whole.results:
            name = result.output_path.name
            assert (run.manifest_path.parent / name).read_bytes() == result.output_path.read_bytes(), name


def test_empty_mask_passes_through_and_bad_case_does_not_stop_the_batch(
    brats_two_cases: tuple[Path, Path], tmp_path: Path
) -> None:
    images, masks = brats_two_cases
    batch_images, batch_masks = tmp_path / "images", tmp_path / "masks"
    batch_images.mkdir(), batch_masks.mkdir()
    for source in images.iterdir():
        (batch_images / source.name).symlink_to(source)
        (batch_masks / source.name).symlink_to(masks / source.name)
    empty = nib.load(images / f"{TRAIN_CASE}.nii.gz")
    nib.save(empty, batch_images / "empty_case.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros(empty.shape, np.int16), empty.affine), batch_masks / "empty_case.nii.gz")
    (batch_images / "broken_case.nii.gz").write_bytes(b"not a nifti file")
    nib.save(nib.Nifti1Image(np.zeros(empty.shape, np.int16), empty.affine), batch_masks / "broken_case.nii.gz")

    summary = protect_dataset(_config(batch_images, batch_masks, tmp_path / "out"))
    status = {r.case_id: r.status for r in summary.results}
    assert status["empty_case"] == "passed_through"
    assert status["broken_case"] == "failed"
    assert "broken_case.nii.gz" in next(r.error for r in summary.results if r.case_id == "broken_case")
    assert (tmp_path / "out" / "empty_case.nii.gz").read_bytes() == (batch_images / "empty_case.nii.gz").read_bytes()
    assert not (tmp_path / "out" / "broken_case.nii.gz").exists()
    assert sum(r.status == "protected" for r in summary.results) == 2


def test_output_inside_input_is_refused(brats_two_cases: tuple[Path, Path]) -> None:
    images, masks = brats_two_cases
    with pytest.raises(ConfigError, match=str(images)):
        protect_dataset(_config(images, masks, images / "protected"))
    assert not (images / "protected").exists()


def test_exact_psnr_scale_meets_the_target_or_the_cap() -> None:
    from umed.protect import exact_psnr_scale

    delta = np.zeros(10_000)
    delta[:100] = 0.01  # 100 voxels at 0.01: PSNR 60 dB over 10,000 voxels
    factor = exact_psnr_scale(float((delta**2).sum()), delta.size, 0.01, target_psnr=50.0, eps_cap=1.0)
    assert 50.0 < 10 * np.log10(1 / np.mean((factor * delta) ** 2)) < 50.001
    assert exact_psnr_scale(float((delta**2).sum()), delta.size, 0.01, target_psnr=50.0, eps_cap=0.02) == pytest.approx(
        2.0
    )
    assert exact_psnr_scale(0.0, delta.size, 0.01, target_psnr=50.0, eps_cap=1.0) == 1.0


def test_target_psnr_is_met_after_8bit_truncation(tmp_path: Path) -> None:
    """uint8 PNG: each change is truncated to whole grey levels, and the per-case rule accounts for it, so the
    written image sits at the target PSNR (not several dB above it, which would waste the budget)."""
    from PIL import Image

    from tests.conftest import write_disk_png

    image, mask = write_disk_png(tmp_path)
    cfg = ProtectConfig(
        images=tmp_path / "images",
        masks=tmp_path / "masks",
        out=tmp_path / "out",
        method="random",
        target_psnr=50.0,
        band_width=1,
        intensity_mode="window",
        window=(0, 255),
        mark=False,  # the protector's truncation compensation (a mark drawn at random can reach eps_cap first)
    )
    (result,) = protect_dataset(cfg).results
    written = np.asarray(Image.open(tmp_path / "out" / "a.png")).astype(np.float64)
    measured = 10 * np.log10(255.0**2 / np.mean((written - image) ** 2))
    assert 50.0 <= measured < 50.2 and result.metrics["psnr"] == pytest.approx(measured, abs=1e-6)
    assert np.abs(written - image).max() >= 2  # more than one grey level: the truncation was compensated


@pytest.fixture(scope="module")
def phantom_volumes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two phantom volumes on disk: one float32, one int16 with scl_slope 0.25 (the budget must survive rounding)."""
    from umed.phantom import make_phantom_dataset

    return make_phantom_dataset(tmp_path_factory.mktemp("phantom"), n_cases=2, shape=(40, 40, 6), seed=5)


@pytest.mark.parametrize("method", sorted(PROTECTORS))
def test_every_method_keeps_the_protect_guarantees(
    method: str, phantom_volumes: tuple[Path, Path], tmp_path: Path, tiny_fit_settings: dict[str, dict]
) -> None:
    """Every protector behind ``umed protect``: input untouched, the file's dtype and header kept, |change| <= eps
    after writing in that dtype, nothing outside structure + band, a manifest entry per case, and a rerun resumes."""
    from umed.protect.protector_io import sha256_file

    settings = {**tiny_fit_settings, "umed": TINY_UMED}  # UMed with this file's tiny settings
    assert set(settings) == set(PROTECTORS), "a protector without a guarantees test"
    images, masks = phantom_volumes
    inputs = sorted(images.iterdir()) + sorted(masks.iterdir())
    before = {path: sha256_file(path) for path in inputs}
    eps = 6 / 255
    config = _config(
        images,
        masks,
        tmp_path / "out",
        method=method,
        target_psnr=None,
        eps_contour=eps,
        eps_texture=eps,
        band_width=2,
        method_settings=settings[method],
    )
    summary = protect_dataset(config)
    assert [r.status for r in summary.results] == ["protected", "protected"], summary.results
    assert {path: sha256_file(path) for path in inputs} == before, "an input file was modified"

    manifest = json.loads(summary.manifest_path.read_text())
    assert manifest["settings"]["method"] == method and manifest["failed"] == {}
    for result in summary.results:
        original, meta = load_case(images / result.output_path.name)
        protected, out_meta = load_case(result.output_path)
        labels, _ = load_mask(masks / result.output_path.name)
        assert out_meta.disk_dtype == meta.disk_dtype and protected.shape == original.shape
        assert out_meta.header.binaryblock == meta.header.binaryblock
        mapping = fit_mapping(original)
        change = np.abs(protected.astype(np.float64) - original) / (mapping.high - mapping.low)
        entry = manifest["cases"][result.case_id]
        assert entry["eps"] <= eps + 1e-9
        assert 0 < change.max() <= entry["eps"] + 1e-6, (result.case_id, change.max(), entry["eps"])
        assert not change[~_slice_support(labels, 2)].any(), "changed voxels outside structure + band"

    resumed = protect_dataset(config)
    assert [r.status for r in resumed.results] == ["skipped", "skipped"]
    for first, again in zip(summary.results, resumed.results):
        assert again.output_path.read_bytes() == first.output_path.read_bytes()
