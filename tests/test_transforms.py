"""UMedProtect / UMedProtectd: MONAI array conventions, the dict twin, errors, and equality with ``umed protect``.

The last tests run a real MONAI pipeline (LoadImaged -> EnsureChannelFirstd -> UMedProtectd -> SaveImaged) and compare
the file it writes with the one ``umed protect`` (:func:`umed.protect.protect_dataset`) wrote for the same case.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, SaveImaged

from umed.errors import ConfigError, InputError
from umed.io import discover_cases, load_case
from umed.protect import protect_dataset
from umed.protect.protector_io import save_protector
from umed.protectors import Budget, make_protector
from umed.regions import support
from umed.settings import ProtectConfig
from umed.transforms import UMedProtect, UMedProtectd, case_id_for

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BRATS_IMAGE = SHARED_DATA / "brats2015" / "t1c" / "brats_2013_pat0003_1.nii.gz"
BRATS_MASK = SHARED_DATA / "brats2015" / "masks" / "brats_2013_pat0003_1.nii.gz"
BUDGET = Budget(8 / 255, 8 / 255, 2)


@pytest.fixture(scope="module")
def noise_protector():
    """Model-free protector whose noise is drawn from ``seed + "case_id/z"``: it shows any case-id mismatch."""
    return make_protector("random", BUDGET, seed=5)


def _case(ndim: int, dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """A channel-first image ``(1, 24, 20[, 5])`` of values 100..300 and labels ``(1, *spatial)`` with a 1/2 block."""
    spatial = (24, 20) if ndim == 2 else (24, 20, 5)
    rng = np.random.default_rng(ndim)
    image = rng.uniform(100.0, 300.0, spatial).astype(dtype)
    labels = np.zeros(spatial, dtype=np.uint8)
    labels[6:16, 5:14, ...] = 1
    labels[9:12, 8:11, ...] = 2
    if ndim == 3:
        labels[..., 0] = 0  # one slice without structure stays untouched
    return image[None], labels[None]


def _allowed(labels: np.ndarray, band_width: int) -> np.ndarray:
    """Structure plus contour band, slice by slice along the last axis, ``labels``' shape without the channel."""
    fg = labels[0] > 0
    volume = fg[..., None] if fg.ndim == 2 else fg
    allowed = np.stack([support(volume[..., z], band_width) for z in range(volume.shape[-1])], axis=-1)
    return allowed.reshape(fg.shape)


# ---------------------------------------------------------------------------------------------- array conventions


@pytest.mark.parametrize("ndim", [2, 3])
def test_numpy_in_numpy_out_within_budget_and_support(ndim: int, noise_protector) -> None:
    image, labels = _case(ndim)
    original = image.copy()
    out = UMedProtect(noise_protector)(image, labels)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == image.shape
    np.testing.assert_array_equal(image, original)  # the input is never changed in place
    change = np.abs(out.astype(np.float64) - image)
    assert change.max() > 0
    assert not change[0][~_allowed(labels, BUDGET.band_width)].any()
    span = np.percentile(image, 99.5) - np.percentile(image, 0.5)
    assert change.max() <= BUDGET.eps_max * span * (1 + 1e-5)
    if ndim == 3:
        assert not change[0, ..., 0].any()


@pytest.mark.parametrize("ndim", [2, 3])
def test_metatensor_keeps_type_affine_and_meta_and_matches_numpy(ndim: int, noise_protector) -> None:
    image, labels = _case(ndim)
    affine = torch.tensor(np.diag([0.8, 0.9, 2.5, 1.0]), dtype=torch.float64)
    meta = {"filename_or_obj": "/data/images/case_7.nii.gz", "custom": "kept"}
    img = MetaTensor(torch.from_numpy(image), affine=affine, meta=meta)
    out = UMedProtect(noise_protector)(img, MetaTensor(torch.from_numpy(labels)))
    assert isinstance(out, MetaTensor) and out.dtype == torch.float32 and tuple(out.shape) == image.shape
    torch.testing.assert_close(out.affine, affine)
    assert out.meta["custom"] == "kept" and out.meta["filename_or_obj"] == meta["filename_or_obj"]
    # the same file name in another folder: the same case id, so the same values (the meta only names the case)
    named = MetaTensor(torch.from_numpy(image), meta={"filename_or_obj": "elsewhere/case_7.nii"})
    np.testing.assert_array_equal(out.numpy(), UMedProtect(noise_protector)(named, labels).numpy())
    # another case id seeds other noise
    renamed = MetaTensor(torch.from_numpy(image), meta={"filename_or_obj": "/data/images/case_8.nii.gz"})
    assert not np.array_equal(out.numpy(), UMedProtect(noise_protector)(renamed, labels).numpy())


def test_torch_tensor_and_integer_dtype_are_kept(noise_protector) -> None:
    image, labels = _case(3)
    as_int = np.rint(image).astype(np.int16)
    out_np = UMedProtect(noise_protector)(as_int, labels)
    assert out_np.dtype == np.int16 and out_np.shape == as_int.shape
    assert (out_np != as_int).any()
    out_t = UMedProtect(noise_protector)(torch.from_numpy(as_int), torch.from_numpy(labels))
    assert isinstance(out_t, torch.Tensor) and not isinstance(out_t, MetaTensor) and out_t.dtype == torch.int16
    np.testing.assert_array_equal(out_t.numpy(), out_np)


def test_label_without_channel_axis_and_float_labels_are_accepted(noise_protector) -> None:
    image, labels = _case(2)
    reference = UMedProtect(noise_protector)(image, labels)
    np.testing.assert_array_equal(UMedProtect(noise_protector)(image, labels[0]), reference)
    np.testing.assert_array_equal(UMedProtect(noise_protector)(image, labels.astype(np.float32)), reference)


def test_structure_labels_restrict_the_change(noise_protector) -> None:
    image, labels = _case(2)
    out = UMedProtect(noise_protector, structure_labels=[2])(image, labels)
    lesion_only = np.where(labels == 2, 2, 0)
    assert not (out != image)[0][~_allowed(lesion_only, BUDGET.band_width)].any()
    assert (out != image).any()


@pytest.mark.parametrize(
    ("image_shape", "label_shape"),
    [
        ((24, 20), (24, 20)),  # no channel axis
        ((2, 24, 20), (1, 24, 20)),  # two channels
        ((1, 24, 20, 5, 2), (1, 24, 20, 5, 2)),  # 4 spatial axes
        ((1, 24, 20), (1, 24, 21)),  # label of another shape
        ((1, 24, 20, 5), (2, 24, 20, 5)),  # one-hot label
    ],
)
def test_bad_shapes_raise_config_error(image_shape, label_shape, noise_protector) -> None:
    protect = UMedProtect(noise_protector)
    with pytest.raises(ConfigError, match="shape") as caught:
        protect(np.zeros(image_shape, np.float32), np.zeros(label_shape, np.uint8))
    assert str(image_shape) in str(caught.value) or str(label_shape) in str(caught.value)


def test_bad_settings_raise_config_error(noise_protector) -> None:
    with pytest.raises(ConfigError, match="intensity_mode"):
        UMedProtect(noise_protector, intensity_mode="zscore")
    with pytest.raises(ConfigError, match="window"):
        UMedProtect(noise_protector, intensity_mode="window")
    with pytest.raises(ConfigError, match="disk_dtype"):
        UMedProtect(noise_protector, disk_dtype="no-such-dtype")
    with pytest.raises(ConfigError, match="filename_or_obj"):
        UMedProtect(noise_protector, disk_dtype="source")(*_case(2))


def test_source_storage_needs_a_readable_nifti(tmp_path: Path, noise_protector) -> None:
    image, labels = _case(2)
    not_nifti = tmp_path / "notes.nii.gz"
    not_nifti.write_text("not an image")
    img = MetaTensor(torch.from_numpy(image), meta={"filename_or_obj": str(not_nifti)})
    with pytest.raises(InputError, match="notes.nii.gz"):
        UMedProtect(noise_protector, disk_dtype="source")(img, labels)


def test_settings_come_from_the_saved_protector(tmp_path: Path, noise_protector) -> None:
    path = save_protector(
        noise_protector,
        tmp_path / "protector.json",
        extra={"structure_labels": [2], "target_psnr": 60.0, "eps_cap": 4 / 255},
    )
    loaded = UMedProtect(path)
    assert (loaded.structure_labels, loaded.target_psnr, loaded.eps_cap) == ((2,), 60.0, 4 / 255)
    assert UMedProtect(path, structure_labels=[1, 2], target_psnr=55.0).structure_labels == (1, 2)
    image, labels = _case(3)
    direct = UMedProtect(noise_protector, structure_labels=[2], target_psnr=60.0, eps_cap=4 / 255)(image, labels)
    np.testing.assert_array_equal(loaded(image, labels), direct)


# ---------------------------------------------------------------------------------------------------- dict twin


def test_dict_twin_protects_keys_and_leaves_the_rest(noise_protector) -> None:
    image, labels = _case(3)
    sample = {"t1": image, "t2": image + 1, "seg": labels, "note": "x"}
    out = UMedProtectd(keys=["t1", "t2"], protector=noise_protector, label_key="seg")(sample)
    assert out is not sample and sample["t1"] is image  # a copy of the dict; the input dict is unchanged
    np.testing.assert_array_equal(out["t1"], UMedProtect(noise_protector)(image, labels))
    np.testing.assert_array_equal(out["t2"], UMedProtect(noise_protector)(image + 1, labels))
    assert out["seg"] is labels and out["note"] == "x"


def test_dict_twin_missing_keys(noise_protector) -> None:
    image, labels = _case(2)
    lenient = UMedProtectd(keys=["image", "t2"], protector=noise_protector, allow_missing_keys=True)
    out = lenient({"image": image, "label": labels})
    assert set(out) == {"image", "label"} and (out["image"] != image).any()
    strict = UMedProtectd(keys=["image", "t2"], protector=noise_protector)
    with pytest.raises(KeyError):
        strict({"image": image, "label": labels})
    with pytest.raises(ConfigError, match="'label'"):
        lenient({"image": image})
    assert lenient({"label": labels}).keys() == {"label"}  # nothing to protect, no label needed


# -------------------------------------------------------------------------------------------------------- case id


@pytest.mark.parametrize(
    ("image_name", "mask_name"),
    [
        ("brats_2013_pat0003_1", "brats_2013_pat0003_1"),
        ("case_0001", "case_0001"),  # a 4-digit suffix that is part of the name
        ("liver_7_0000", "liver_7"),  # nnU-Net channel file
        ("spleen_0000", "spleen_0000"),
        ("knee_0003", "knee_0007"),  # both suffixed, one image
    ],
)
def test_case_id_matches_the_cli_pairing(tmp_path: Path, image_name: str, mask_name: str) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    (tmp_path / "images" / f"{image_name}.nii.gz").touch()
    (tmp_path / "masks" / f"{mask_name}.nii.gz").touch()
    (cli_case,) = discover_cases(tmp_path / "images", tmp_path / "masks")
    image_path = Path("/x") / f"{image_name}.nii.gz"
    assert case_id_for(image_path, Path("/y") / f"{mask_name}.nii.gz") == cli_case.case_id
    assert case_id_for(None, None, fallback="anonymous") == "anonymous"


# ------------------------------------------------------------------------------ pipeline output == CLI output


def _pipeline(protector: Path, out_dir: Path, **protect_kwargs) -> Compose:
    """The MONAI pipeline a user would write: load unchanged (nibabel order), protect, save as float32."""
    return Compose(
        [
            LoadImaged(keys=["image", "label"], reader="NibabelReader", image_only=True),
            EnsureChannelFirstd(keys=["image", "label"]),
            UMedProtectd(keys="image", protector=protector, label_key="label", **protect_kwargs),
            SaveImaged(
                keys="image",
                output_dir=out_dir,
                output_postfix="",
                separate_folder=False,
                output_dtype=np.float32,
                resample=False,
                print_log=False,
            ),
        ]
    )


def _file_units(path: Path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).get_fdata(dtype=np.float64))


def test_pipeline_equals_cli_on_phantoms_float_and_scaled_int16(tmp_path: Path) -> None:
    """Per-slice seeds depend on the case id: the random protector draws its noise from ``seed + "case_id/z"``, so
    equal outputs for several cases mean the transform names each case as the CLI does. The odd phantom is int16
    with ``scl_slope`` 0.25 / ``scl_inter`` -100: ``disk_dtype="source"`` truncates the change to stored units as the
    CLI does, so the two agree in file units (every value ``k * 0.25 - 100`` is exact in float32)."""
    from umed.phantom import make_phantom_dataset

    images, masks = make_phantom_dataset(tmp_path / "phantoms", n_cases=2, shape=(32, 32, 6), seed=1)
    cfg = ProtectConfig(
        images=images, masks=masks, out=tmp_path / "cli", method="random", seed=9, target_psnr=45.0, mark=False
    )  # the transforms apply a protector; the release's mark is umed protect's
    summary = protect_dataset(cfg)
    assert [r.status for r in summary.results] == ["protected", "protected"]
    pipeline = _pipeline(summary.protector_path, tmp_path / "monai", disk_dtype="source")
    for case in discover_cases(images, masks):
        pipeline({"image": str(case.image_path), "label": str(case.mask_path)})
        written = tmp_path / "monai" / case.image_path.name
        cli = _file_units(tmp_path / "cli" / case.image_path.name)
        np.testing.assert_array_equal(_file_units(written), cli)
        assert (cli != _file_units(case.image_path)).any()


@pytest.mark.slow
@pytest.mark.usefixtures("brats_dir")  # fails when ../shared/data is missing (see tests/conftest.py)
def test_monai_pipeline_on_real_brats_equals_umed_protect(tmp_path: Path) -> None:
    """Acceptance: a real BraTS case (T1c, 24 axial slices around the tumour, float32 on disk) protected by
    ``protect_dataset`` with a tiny UMed protector, and by LoadImaged -> EnsureChannelFirstd -> UMedProtectd(that
    protector.json) -> SaveImaged(float32): the voxel data are exactly equal (tolerance 0). BraTS is stored as
    float32, LoadImage returns float32 in nibabel's axis order, and both paths call protect_array with the same
    case id, intensity mapping, budget and protector, so no rounding step differs."""
    image, mask = nib.load(str(BRATS_IMAGE)), nib.load(str(BRATS_MASK))
    tumour = np.asarray(mask.dataobj) > 0
    centre = int(np.argmax(tumour.sum(axis=(0, 1))))
    z0 = max(0, centre - 12)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    name = BRATS_IMAGE.name
    nib.save(image.slicer[:, :, z0 : z0 + 24], tmp_path / "images" / name)
    nib.save(mask.slicer[:, :, z0 : z0 + 24], tmp_path / "masks" / name)

    cfg = ProtectConfig(
        images=tmp_path / "images",
        masks=tmp_path / "masks",
        out=tmp_path / "OUT",
        method="umed",
        seed=11,
        target_psnr=50.0,
        method_settings={"steps": 2, "crop": 32, "batch_size": 2, "base_channels": 4},
        mark=False,  # the transforms apply a protector; the release's mark is umed protect's
    )
    summary = protect_dataset(cfg)
    (result,) = summary.results
    assert result.status == "protected" and result.case_id == "brats_2013_pat0003_1"
    cli_path = tmp_path / "OUT" / name
    assert cli_path.is_file() and (tmp_path / "OUT" / "protector.json").is_file()

    # LoadImaged's array is umed.io.load_case's (nibabel axis order, float32), with the file as filename_or_obj
    loaded = EnsureChannelFirstd(keys=["image", "label"])(
        LoadImaged(keys=["image", "label"], reader="NibabelReader", image_only=True)(
            {"image": str(tmp_path / "images" / name), "label": str(tmp_path / "masks" / name)}
        )
    )
    reference, meta = load_case(tmp_path / "images" / name)
    assert loaded["image"].dtype == torch.float32 and reference.dtype == np.float32
    np.testing.assert_array_equal(loaded["image"][0].numpy(), reference)
    assert (
        case_id_for(Path(loaded["image"].meta["filename_or_obj"]), Path(loaded["label"].meta["filename_or_obj"]))
        == result.case_id
    )

    _pipeline(tmp_path / "OUT" / "protector.json", tmp_path / "monai")(
        {"image": str(tmp_path / "images" / name), "label": str(tmp_path / "masks" / name)}
    )
    written = nib.load(str(tmp_path / "monai" / name))
    cli = nib.load(str(cli_path))
    assert written.get_data_dtype() == np.float32 and written.shape == cli.shape == meta.shape
    np.testing.assert_allclose(written.affine, cli.affine, atol=1e-5)
    pipeline_voxels, cli_voxels = np.asarray(written.dataobj), np.asarray(cli.dataobj)
    np.testing.assert_array_equal(pipeline_voxels, cli_voxels)
    assert int((cli_voxels != reference).sum()) == result.metrics["changed_voxels"] > 0
