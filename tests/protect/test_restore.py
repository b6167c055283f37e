"""umed.protect.restore: ``protect --restore-key`` then ``restore`` gives the original files back bit for bit (NIfTI
float32/int16/uint8, .nii and .nii.gz, PNG, TIFF, a DICOM series); a wrong key, a changed or missing file are
clear errors and nothing is written; OUT is the same with and without a key; the key stays small."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from umed.errors import ConfigError, InputError, OutputError
from umed.protect import protect_dataset
from umed.protect.restore import read_restore_key, restore_dataset
from umed.settings import ProtectConfig


def _mask(shape: tuple[int, ...]) -> np.ndarray:
    """A blob of label 1 near the centre, so the structure and its band are a small part of the image."""
    grid = np.indices(shape[:2])
    centre = [n // 2 for n in shape[:2]]
    disc = ((grid[0] - centre[0]) ** 2 + (grid[1] - centre[1]) ** 2) < (min(shape[:2]) // 5) ** 2
    return np.broadcast_to(disc[..., None] if len(shape) == 3 else disc, shape).astype(np.uint8)


def _nifti_cases(root: Path) -> tuple[Path, Path]:
    """float32 .nii.gz (nibabel's gzip), float32 .nii.gz (gzip level 9 with a file name and time, as other tools
    write), int16 + slope .nii.gz, uint8 .nii; oblique affine."""
    images, masks = root / "images", root / "masks"
    images.mkdir(parents=True), masks.mkdir(parents=True)
    rng = np.random.default_rng(7)
    shape = (24, 20, 6)
    affine = np.array([[0.9, 0.2, 0, -40], [-0.2, 0.9, 0, 25], [0, 0, 2.5, 12], [0, 0, 0, 1]])
    floats = rng.normal(100, 30, shape).astype(np.float32)
    nib.save(nib.Nifti1Image(floats, affine), images / "f32.nii.gz")
    raw = nib.Nifti1Image(floats[::-1].copy(), affine).to_bytes()
    with gzip.GzipFile(images / "f32_l9.nii.gz", "wb", compresslevel=9, mtime=1234567) as handle:
        handle.write(raw)
    scaled = nib.Nifti1Image(rng.integers(-2000, 2000, shape).astype(np.int16), affine)
    scaled.header.set_slope_inter(0.5, -10.0)
    nib.save(scaled, images / "i16.nii.gz")
    nib.save(nib.Nifti1Image(rng.integers(0, 256, shape).astype(np.uint8), affine), images / "u8.nii")
    for name in ("f32.nii.gz", "f32_l9.nii.gz", "i16.nii.gz", "u8.nii"):
        nib.save(nib.Nifti1Image(_mask(shape), affine), masks / name)
    return images, masks


def _config(images: Path, masks: Path, out: Path, **overrides) -> ProtectConfig:
    # no mark: two runs would draw two keys (the restore key works the same with the mark: tests/verify)
    values = dict(images=images, masks=masks, out=out, method="random", seed=0, target_psnr=None, mark=False)
    return ProtectConfig(**{**values, **overrides})


def _assert_restored(images: Path, restored: Path) -> None:
    originals = sorted(p.relative_to(images) for p in images.rglob("*") if p.is_file())
    assert originals == sorted(p.relative_to(restored) for p in restored.rglob("*") if p.is_file())
    for name in originals:
        assert (restored / name).read_bytes() == (images / name).read_bytes(), name


@pytest.fixture
def release(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    """``(images, masks, protected OUT, key)`` of the four NIfTI cases."""
    images, masks = _nifti_cases(tmp_path / "data")
    summary = protect_dataset(_config(images, masks, tmp_path / "out"), restore_key=tmp_path / "secret" / "key")
    assert [r.status for r in summary.results] == ["protected"] * 4
    assert summary.restore_key == tmp_path / "secret" / "key"
    return images, masks, tmp_path / "out", tmp_path / "secret" / "key"


def test_nifti_round_trip_is_bit_exact(release, tmp_path: Path) -> None:
    images, _, out, key = release
    for name in ("f32.nii.gz", "i16.nii.gz", "u8.nii"):  # the release really differs from the originals
        assert not np.array_equal(nib.load(out / name).get_fdata(), nib.load(images / name).get_fdata()), name
    summary = restore_dataset(out, key, tmp_path / "original")
    assert summary.case_ids == ["f32", "f32_l9", "i16", "u8"]
    _assert_restored(images, tmp_path / "original")
    restored = nib.load(tmp_path / "original" / "i16.nii.gz")
    assert restored.get_data_dtype() == np.int16 and (restored.dataobj.slope, restored.dataobj.inter) == (0.5, -10.0)
    layers = {case.case_id: case.files[0].patch["layer"] for case in read_restore_key(key).cases}
    assert layers == {"f32": "gzip", "f32_l9": "gzip", "i16": "gzip", "u8": "raw"}  # no whole copy needed


def test_the_release_is_the_same_with_and_without_a_key(release, tmp_path: Path) -> None:
    images, masks, out, key = release
    protect_dataset(_config(images, masks, tmp_path / "plain"))
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in (tmp_path / "plain").iterdir())
    for path in out.iterdir():
        if path.name != "manifest.json":
            assert path.read_bytes() == (tmp_path / "plain" / path.name).read_bytes()
    manifests = [json.loads((folder / "manifest.json").read_text()) for folder in (out, tmp_path / "plain")]
    for manifest in manifests:
        manifest["settings"].pop("out")
        for entry in manifest["cases"].values():
            entry.pop("seconds", None)
    assert manifests[0] == manifests[1]
    assert key.stat().st_mode & 0o077 == 0  # the key is readable by its owner only


def test_png_and_tiff_round_trip_is_bit_exact(tmp_path: Path) -> None:
    import tifffile
    from PIL import Image

    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(), masks.mkdir()
    rng = np.random.default_rng(8)
    Image.fromarray(rng.integers(0, 256, (40, 36)).astype(np.uint8)).save(images / "a.png")
    Image.fromarray(rng.integers(0, 65536, (30, 32)).astype(np.uint16)).save(images / "b.png")
    tifffile.imwrite(images / "c.tif", rng.integers(0, 4096, (28, 30)).astype(np.uint16))
    for name, shape in (("a.png", (40, 36)), ("b.png", (30, 32)), ("c.tif", (28, 30))):
        mask = _mask(shape) * 255
        (Image.fromarray(mask).save if name.endswith(".png") else lambda p, m=mask: tifffile.imwrite(p, m))(
            masks / name
        )
    summary = protect_dataset(_config(images, masks, tmp_path / "out"), restore_key=tmp_path / "key")
    assert [r.status for r in summary.results] == ["protected"] * 3
    assert not np.array_equal(
        np.asarray(Image.open(tmp_path / "out" / "a.png")), np.asarray(Image.open(images / "a.png"))
    )
    restore_dataset(tmp_path / "out", tmp_path / "key", tmp_path / "original")
    _assert_restored(images, tmp_path / "original")
    layers = {case.case_id: case.files[0].patch["layer"] for case in read_restore_key(tmp_path / "key").cases}
    assert layers == {"a": "png", "b": "png", "c": "raw"}  # pillow's PNGs are re-compressed, not kept whole


def test_dicom_series_round_trip_gives_the_original_files(dicom_series, tmp_path: Path) -> None:
    import pydicom

    folder, values, affine = dicom_series
    masks = tmp_path / "masks"
    masks.mkdir()
    nib.save(nib.Nifti1Image(_mask(values.shape).astype(np.int16), affine), masks / f"{folder.name}.nii.gz")
    summary = protect_dataset(_config(folder.parent, masks, tmp_path / "out"), restore_key=tmp_path / "key")
    assert [r.status for r in summary.results] == ["protected"]
    restore_dataset(tmp_path / "out", tmp_path / "key", tmp_path / "original")
    _assert_restored(folder.parent, tmp_path / "original")
    for path in sorted(folder.iterdir()):
        original, restored = pydicom.dcmread(path), pydicom.dcmread(tmp_path / "original" / folder.name / path.name)
        protected = pydicom.dcmread(tmp_path / "out" / folder.name / path.name)
        assert restored.SOPInstanceUID == original.SOPInstanceUID != protected.SOPInstanceUID
        assert np.array_equal(restored.pixel_array, original.pixel_array)
    size = sum(p.stat().st_size for p in (tmp_path / "out" / folder.name).iterdir())
    assert (tmp_path / "key").stat().st_size < size / 2  # the header and the changed voxels, not the series


def test_a_key_of_another_release_is_refused_and_nothing_is_written(release, tmp_path: Path) -> None:
    images, masks, out, key = release
    protect_dataset(_config(images, masks, tmp_path / "other", seed=5), restore_key=tmp_path / "other.key")
    with pytest.raises(ConfigError, match=rf"{tmp_path / 'other.key'}: not the restore key of"):
        restore_dataset(out, tmp_path / "other.key", tmp_path / "original")
    assert not (tmp_path / "original").exists()
    (out / "manifest.json").unlink()  # without the manifest: none of the key's files is in the release
    with pytest.raises(ConfigError, match="not the restore key"):
        restore_dataset(out, tmp_path / "other.key", tmp_path / "original")
    assert not (tmp_path / "original").exists()


def test_a_changed_or_missing_file_is_named_and_nothing_is_written(release, tmp_path: Path) -> None:
    _, _, out, key = release
    data = bytearray((out / "u8.nii").read_bytes())
    data[-1] ^= 1
    (out / "u8.nii").write_bytes(bytes(data))
    with pytest.raises(InputError, match=rf"{out / 'u8.nii'}: changed since protection"):
        restore_dataset(out, key, tmp_path / "original")
    assert not (tmp_path / "original").exists()
    (out / "i16.nii.gz").unlink()
    with pytest.raises(InputError, match=rf"{out / 'i16.nii.gz'}: missing from the release"):
        restore_dataset(out, key, tmp_path / "original")
    assert not (tmp_path / "original").exists()


def test_key_inside_out_or_an_input_and_a_full_restore_folder_are_refused(release, tmp_path: Path) -> None:
    images, masks, out, key = release
    with pytest.raises(ConfigError, match="must not be inside the output folder"):
        protect_dataset(_config(images, masks, tmp_path / "new"), restore_key=tmp_path / "new" / "key")
    assert not (tmp_path / "new").exists()
    with pytest.raises(ConfigError, match="must not be inside an input folder"):
        protect_dataset(_config(images, masks, tmp_path / "new"), restore_key=images / "key")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="must not exist or be empty"):
        restore_dataset(out, key, tmp_path / "full")
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["notes.txt"]
    with pytest.raises(InputError, match="cannot read the restore key"):
        restore_dataset(out, images / "u8.nii", tmp_path / "original")


def test_key_is_at_most_5_percent_of_the_protected_phantoms(tmp_path: Path) -> None:
    """The structure (lesion, label 2: 0.9-1.7% of each phantom) and its band change; the key holds their
    original values and the gzip settings, so it stays a small part of the release."""
    from umed.phantom import make_phantom_dataset

    images, masks = make_phantom_dataset(tmp_path / "data", n_cases=4, seed=3)
    cfg = _config(images, masks, tmp_path / "out", structure_labels=(2,), target_psnr=50.0)
    summary = protect_dataset(cfg, restore_key=tmp_path / "key")
    released = sum(result.output_path.stat().st_size for result in summary.results)
    assert (tmp_path / "key").stat().st_size <= 0.05 * released
    restore_dataset(tmp_path / "out", tmp_path / "key", tmp_path / "original")
    _assert_restored(images, tmp_path / "original")
