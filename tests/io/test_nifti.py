"""NIfTI: load in file units, save with the header bit for bit, quantise to the stored dtype, refuse bad files."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from umed.errors import GeometryError, InputError
from umed.io import load_case, quantize, save_case

BRATS_CASES = [f"brats_2013_pat000{i}_1" for i in range(1, 7)]


def _content(path: Path) -> bytes:
    """The file's bytes, decompressed for ``.gz``."""
    return gzip.open(path).read() if path.name.endswith(".gz") else path.read_bytes()


def _raw_header(path: Path) -> nib.Nifti1Header:
    with gzip.open(path) if path.name.endswith(".gz") else open(path, "rb") as handle:
        return nib.Nifti1Header.from_fileobj(handle, check=False)


@pytest.mark.parametrize("folder", ["volumes", "masks"])
@pytest.mark.parametrize("case", BRATS_CASES)
def test_every_brats_case_round_trips_bit_for_bit(brats_dir: Path, tmp_path: Path, folder: str, case: str) -> None:
    source = brats_dir / folder / f"{case}.nii.gz"
    array, meta = load_case(source)
    assert array.shape == meta.shape == (240, 240, 155)
    assert array.dtype == meta.disk_dtype == np.float32
    written = save_case(array, meta, tmp_path / source.name)
    assert written == tmp_path / source.name
    assert _content(written) == _content(source)  # header, extensions and every voxel byte
    again, meta2 = load_case(written)
    assert meta2.header.binaryblock == meta.header.binaryblock == _raw_header(source).binaryblock
    np.testing.assert_array_equal(meta2.affine, meta.affine)
    np.testing.assert_array_equal(meta.affine, nib.load(source).affine)
    assert meta2.disk_dtype == meta.disk_dtype and again.dtype == array.dtype
    assert np.array_equal(again, array)
    assert sorted(p.name for p in tmp_path.iterdir()) == [source.name]


def test_scaled_brainmask_keeps_int32_and_slope(brats_dir: Path, tmp_path: Path) -> None:
    """The BraTS brain masks are int32 with scl_slope 2**-32, scl_inter 0.5: a real scaled file."""
    source = brats_dir / "brainmask" / f"{BRATS_CASES[0]}.nii.gz"
    array, meta = load_case(source)
    assert meta.disk_dtype == np.int32 and array.dtype == np.float64
    assert meta.slope == pytest.approx(2.0**-32) and meta.intercept == 0.5
    np.testing.assert_array_equal(array[:, :, 70:74], nib.load(source).dataobj[:, :, 70:74])  # nibabel's scaling
    np.testing.assert_array_equal(quantize(array[:, :, 60:90], meta), array[:, :, 60:90])
    assert _content(save_case(array, meta, tmp_path / source.name)) == _content(source)


def test_oblique_float_image_round_trips(nifti_float, tmp_path: Path) -> None:
    array, meta = load_case(nifti_float.image)
    np.testing.assert_array_equal(array, nifti_float.data)
    np.testing.assert_allclose(meta.affine, nifti_float.affine, atol=1e-5)
    np.testing.assert_allclose(meta.spacing, (0.7, 0.9, 2.5), atol=1e-5)
    assert meta.format == "nifti" and meta.case_id == "case_a"
    out = save_case(array, meta, tmp_path / "out" / "case_a.nii.gz")
    assert _content(out) == _content(nifti_float.image)
    assert _raw_header(out)["descrip"] == b"umed test fixture"


def test_int16_with_slope_is_float64_in_file_units_and_saved_as_stored_integers(
    nifti_int16_scaled, tmp_path: Path
) -> None:
    array, meta = load_case(nifti_int16_scaled.image)
    assert meta.disk_dtype == np.int16 and (meta.slope, meta.intercept) == (0.5, -10.0)
    assert array.dtype == np.float64
    np.testing.assert_array_equal(array, nifti_int16_scaled.data * 0.5 - 10.0)
    out = save_case(array, meta, tmp_path / "scaled.nii.gz")
    assert _content(out) == _content(nifti_int16_scaled.image)
    header = _raw_header(out)
    assert (float(header["scl_slope"]), float(header["scl_inter"])) == (0.5, -10.0)

    changed = array + 0.3  # not representable: 0.3 is not a multiple of 0.5
    np.asarray(nib.load(out).dataobj.get_unscaled())  # still readable by nibabel
    saved = save_case(changed, meta, tmp_path / "changed.nii.gz")
    stored = np.asarray(nib.load(saved).dataobj.get_unscaled())
    assert stored.dtype == np.int16
    back, _ = load_case(saved)
    np.testing.assert_array_equal(back, quantize(changed, meta))
    inside = (changed > -10 - 0.5 * 32768 + 1) & (changed < -10 + 0.5 * 32767 - 1)
    assert np.abs(back - changed)[inside].max() <= 0.25 + 1e-12  # half a stored unit


def test_quantize_clips_to_the_dtype_range(nifti_int16_scaled) -> None:
    array, meta = load_case(nifti_int16_scaled.image)
    huge = np.full(meta.shape, 1e9)
    assert np.all(quantize(huge, meta) == 32767 * 0.5 - 10)
    assert np.all(quantize(-huge, meta) == -32768 * 0.5 - 10)
    np.testing.assert_array_equal(quantize(array, meta), array)


def test_quantize_float_file_is_a_cast(nifti_float) -> None:
    array, meta = load_case(nifti_float.image)
    values = array.astype(np.float64) + 1e-9
    quantized = quantize(values, meta)
    assert quantized.dtype == np.float32
    np.testing.assert_array_equal(quantized, values.astype(np.float32))


def test_uncompressed_big_endian_extension_and_2d_files_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = rng.integers(0, 4000, (6, 7, 3)).astype(">u2")
    image = nib.Nifti1Image(data, np.diag([1.5, 1.5, 4.0, 1.0]))
    image.header.extensions.append(nib.nifti1.Nifti1Extension("comment", b"made by umed tests"))
    big = tmp_path / "big.nii"
    nib.save(image, big)
    raw = big.read_bytes()
    assert raw[348:352] == b"\x01\x00\x00\x00"  # it does have an extension
    array, meta = load_case(big)
    assert meta.disk_dtype == np.uint16 and array.dtype == np.uint16
    np.testing.assert_array_equal(array, data)
    out = save_case(array, meta, tmp_path / "out" / "big.nii")
    assert out.read_bytes() == raw

    plane = rng.normal(size=(5, 4)).astype(np.float32)
    nib.save(nib.Nifti1Image(plane, np.diag([0.5, 0.25, 1.0, 1.0])), tmp_path / "plane.nii.gz")
    array, meta = load_case(tmp_path / "plane.nii.gz")
    assert array.shape == meta.shape == (5, 4) and meta.spacing == (0.5, 0.25)
    out = save_case(array, meta, tmp_path / "out" / "plane.nii.gz")
    assert _content(out) == _content(tmp_path / "plane.nii.gz")


def test_singleton_fourth_dimension_is_squeezed_and_kept_on_save(tmp_path: Path) -> None:
    data = np.arange(4 * 5 * 3, dtype=np.float32).reshape(4, 5, 3, 1)
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "four.nii.gz")
    array, meta = load_case(tmp_path / "four.nii.gz")
    assert array.shape == (4, 5, 3)
    out = save_case(array, meta, tmp_path / "out" / "four.nii.gz")
    assert _content(out) == _content(tmp_path / "four.nii.gz")
    assert nib.load(out).shape == (4, 5, 3, 1)


def test_several_channels_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "channels.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 3, 2), np.float32), np.eye(4)), path)
    with pytest.raises(InputError, match="one channel") as error:
        load_case(path)
    assert str(path) in str(error.value) and "_0000" in str(error.value)


@pytest.mark.parametrize("compressed", [True, False])
def test_truncated_file_names_the_file(nifti_float, tmp_path: Path, compressed: bool) -> None:
    content = _content(nifti_float.image)
    path = tmp_path / ("cut.nii.gz" if compressed else "cut.nii")
    cut = content[: len(content) - 100]
    path.write_bytes(gzip.compress(cut)[:-30] if compressed else cut)
    with pytest.raises(InputError) as error:
        load_case(path)
    message = str(error.value)
    assert message.startswith(f"{path}: ")
    assert "truncated" in message or "unreadable" in message


def test_not_a_nifti_file(tmp_path: Path) -> None:
    path = tmp_path / "text.nii"
    path.write_bytes(b"this is not an image at all, not even close" * 20)
    with pytest.raises(InputError, match="not a NIfTI file") as error:
        load_case(path)
    assert str(error.value).startswith(str(path))


def test_failed_save_leaves_nothing_behind(nifti_int16_scaled, tmp_path: Path, list_files) -> None:
    array, meta = load_case(nifti_int16_scaled.image)
    out = tmp_path / "out"
    out.mkdir()
    bad = array.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN or Inf"):
        save_case(bad, meta, out / "scaled.nii.gz")
    with pytest.raises(GeometryError, match=r"expected \(9, 11, 5\), got \(9, 11, 4\)"):
        save_case(array[..., :4], meta, out / "scaled.nii.gz")
    assert list_files(out) == []


def test_overwrite_replaces_the_file_atomically(nifti_float, tmp_path: Path, list_files) -> None:
    array, meta = load_case(nifti_float.image)
    target = tmp_path / "out" / "case_a.nii.gz"
    save_case(array + 1, meta, target)
    save_case(array, meta, target)
    assert _content(target) == _content(nifti_float.image)
    assert list_files(tmp_path / "out") == ["case_a.nii.gz"]


def test_nifti2_and_zero_qfac_files_round_trip(tmp_path: Path) -> None:
    data = np.arange(3 * 4 * 5, dtype=np.int16).reshape(3, 4, 5)
    affine = np.array([[0, 0, 2.0, -5], [1.5, 0, 0, 3], [0, 1.2, 0, 7], [0, 0, 0, 1]])
    nib.save(nib.Nifti2Image(data, affine), tmp_path / "two.nii.gz")
    array, meta = load_case(tmp_path / "two.nii.gz")
    np.testing.assert_array_equal(array, data)
    np.testing.assert_allclose(meta.affine, affine)
    assert _content(save_case(array, meta, tmp_path / "out" / "two.nii.gz")) == _content(tmp_path / "two.nii.gz")

    image = nib.Nifti1Image(data, affine)
    image.set_sform(None, code=0)
    image.set_qform(affine, code=1)  # qform only, so qfac matters
    nib.save(image, tmp_path / "qfac.nii")
    raw = bytearray((tmp_path / "qfac.nii").read_bytes())
    raw[76:80] = np.float32(0).tobytes()  # pixdim[0] (qfac) = 0, as some tools write it
    (tmp_path / "qfac.nii").write_bytes(bytes(raw))
    with pytest.raises(nib.spatialimages.HeaderDataError):
        nib.Nifti1Header(bytes(raw[:348]), check=False).get_best_affine()
    array, meta = load_case(tmp_path / "qfac.nii")
    np.testing.assert_allclose(meta.affine, nib.load(tmp_path / "qfac.nii").affine)
    assert save_case(array, meta, tmp_path / "out" / "qfac.nii").read_bytes() == bytes(raw)


def test_quantize_slices_equals_quantize_where_slices_changed(nifti_int16_scaled) -> None:
    from umed.io import quantize_slices

    array, meta = load_case(nifti_int16_scaled.image)
    changed = array.copy()
    changed[..., [1, 3]] += 0.37  # not storable: between two stored units
    expected = quantize(changed, meta)
    got = quantize_slices(changed.copy(), meta, [[1], [3]])
    np.testing.assert_array_equal(got, expected)
