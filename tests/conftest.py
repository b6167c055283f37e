"""Shared fixtures: tiny real files written to ``tmp_path`` (NIfTI, DICOM, PNG, TIFF) and the shared real datasets.

The small files are written with the format libraries themselves (nibabel, pillow, tifffile), not with umed, so that
the I/O tests check umed against an independent writer. The DICOM fixture uses :func:`umed.io.make_dicom_series`;
tests/io/test_dicom.py checks that writer against SimpleITK's reader.

Tests that read ``../shared/data`` get it through :func:`require_shared_data` (the ``brats_dir``, ``isbi_dir``,
``brats_crops`` and ``shared_data`` fixtures): when it is missing they fail, with a message saying where it was
expected, because CI always has it and a silent skip would hide that half the suite did not run. With
``UMED_ALLOW_MISSING_DATA=1`` they are skipped instead (for a checkout without the data).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ALLOW_MISSING_DATA = "UMED_ALLOW_MISSING_DATA"


def require_shared_data(*parts: str) -> Path:
    """``../shared/data/<parts>``, which must exist: the test fails when it does not (skips with
    ``UMED_ALLOW_MISSING_DATA=1``)."""
    path = SHARED_DATA.joinpath(*parts)
    if path.exists():
        return path
    message = (
        f"{path}: shared test data missing (expected the real datasets in ../shared/data beside the repository, "
        f"as CI has them); set {ALLOW_MISSING_DATA}=1 to skip the tests that need them instead"
    )
    if os.environ.get(ALLOW_MISSING_DATA) == "1":
        pytest.skip(message)
    pytest.fail(message, pytrace=False)


def oblique_affine(spacing=(0.7, 0.9, 2.5), degrees: float = 20.0, origin=(-40.0, 25.5, 12.0)) -> np.ndarray:
    """Voxel-to-RAS affine rotated about z by ``degrees`` then about x by half of it, with anisotropic spacing."""
    a, b = np.deg2rad(degrees), np.deg2rad(degrees / 2)
    rz = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(b), -np.sin(b)], [0.0, np.sin(b), np.cos(b)]])
    affine = np.eye(4)
    affine[:3, :3] = rz @ rx @ np.diag(spacing)
    affine[:3, 3] = origin
    return affine


@dataclass(frozen=True)
class NiftiPair:
    """An image and its label map on disk, plus the arrays and affine they were written from."""

    image: Path
    mask: Path
    data: np.ndarray
    labels: np.ndarray
    affine: np.ndarray


def _labels(shape: tuple[int, ...]) -> np.ndarray:
    labels = np.zeros(shape, dtype=np.uint8)
    labels[2:7, 3:9, ...] = 1
    labels[3:5, 4:6, ...] = 2
    return labels


@pytest.fixture
def nifti_float(tmp_path: Path) -> NiftiPair:
    """float32 ``(10, 12, 8)`` image + uint8 mask, oblique affine, 0.7 x 0.9 x 2.5 mm, in ``tmp_path/data``."""
    folder = tmp_path / "data"
    folder.mkdir()
    rng = np.random.default_rng(1)
    data = (rng.normal(100.0, 30.0, (10, 12, 8))).astype(np.float32)
    affine = oblique_affine()
    image = nib.Nifti1Image(data, affine)
    image.header["descrip"] = b"umed test fixture"
    image.header.set_xyzt_units("mm", "sec")
    labels = _labels(data.shape)
    nib.save(image, folder / "case_a.nii.gz")
    nib.save(nib.Nifti1Image(labels, affine), folder / "case_a_mask.nii.gz")
    return NiftiPair(folder / "case_a.nii.gz", folder / "case_a_mask.nii.gz", data, labels, affine)


@pytest.fixture
def nifti_int16_scaled(tmp_path: Path) -> NiftiPair:
    """int16 ``(9, 11, 5)`` image stored with ``scl_slope = 0.5``, ``scl_inter = -10`` (file units = raw * 0.5 - 10)."""
    folder = tmp_path / "scaled"
    folder.mkdir()
    rng = np.random.default_rng(2)
    raw = rng.integers(-2000, 2000, (9, 11, 5)).astype(np.int16)
    raw[0, 0, 0], raw[1, 0, 0] = -32768, 32767  # the dtype's extremes
    affine = oblique_affine((1.1, 0.8, 3.0), degrees=-15.0)
    image = nib.Nifti1Image(raw, affine)
    image.header.set_slope_inter(0.5, -10.0)
    nib.save(image, folder / "scaled.nii.gz")
    labels = _labels(raw.shape)
    nib.save(nib.Nifti1Image(labels, affine), folder / "scaled_mask.nii.gz")
    return NiftiPair(folder / "scaled.nii.gz", folder / "scaled_mask.nii.gz", raw, labels, affine)


@pytest.fixture
def dicom_series(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """A 3-slice int16 MR series (rescale slope 2, intercept -100, oblique, 0.8 x 0.6 x 3 mm).

    Returns:
        ``(folder, values, affine)`` with ``values`` ``(12, 10, 3)`` in file units (exactly representable).
    """
    from umed.io import make_dicom_series

    rng = np.random.default_rng(3)
    values = rng.integers(-500, 1500, (12, 10, 3)).astype(np.float64) * 2.0 - 100.0
    affine = oblique_affine((0.8, 0.6, 3.0), degrees=30.0)
    folder = make_dicom_series(
        values, affine, tmp_path / "dicom" / "series_a", patient_id="PAT-42", slope=2.0, intercept=-100.0
    )
    return folder, values, affine


@pytest.fixture
def png_files(tmp_path: Path) -> dict[str, Path]:
    """Grey PNGs written by pillow: ``uint8`` (13 x 17), ``uint16`` (9 x 6), a palette image and a 1-bit image."""
    from PIL import Image

    folder = tmp_path / "png"
    folder.mkdir()
    rng = np.random.default_rng(4)
    Image.fromarray(rng.integers(0, 256, (13, 17)).astype(np.uint8)).save(folder / "grey8.png")
    Image.fromarray(rng.integers(0, 65536, (9, 6)).astype(np.uint16)).save(folder / "grey16.png")
    palette = Image.fromarray(rng.integers(0, 4, (8, 8)).astype(np.uint8)).convert("L")
    palette = palette.convert("P")
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0, 0, 0] * 252)
    palette.save(folder / "palette.png")
    Image.fromarray(rng.integers(0, 2, (7, 5)).astype(bool)).save(folder / "bits.png")
    return {name: folder / f"{name}.png" for name in ("grey8", "grey16", "palette", "bits")}


@pytest.fixture
def tiff_files(tmp_path: Path) -> dict[str, Path]:
    """Single-page grey TIFFs written by tifffile: ``uint16`` (11 x 7), ``float32`` (5 x 6, deflate-compressed)."""
    import tifffile

    folder = tmp_path / "tiff"
    folder.mkdir()
    rng = np.random.default_rng(5)
    tifffile.imwrite(folder / "grey16.tif", rng.integers(0, 65536, (11, 7)).astype(np.uint16))
    tifffile.imwrite(folder / "float.tiff", rng.normal(size=(5, 6)).astype(np.float32), compression="zlib")
    return {"grey16": folder / "grey16.tif", "float": folder / "float.tiff"}


@pytest.fixture(scope="session")
def shared_data() -> Callable[..., Path]:
    """The :func:`require_shared_data` helper: ``shared_data("brats2015", "t1c", "case.nii.gz")``."""
    return require_shared_data


@pytest.fixture(scope="session")
def brats_dir() -> Path:
    """The shared BraTS 2015 sample (six cases, 240 x 240 x 155 float32: volumes/, t1c/, masks/, brainmask/)."""
    for folder in ("volumes", "t1c", "masks"):
        require_shared_data("brats2015", folder)
    return SHARED_DATA / "brats2015"


@pytest.fixture(scope="session")
def isbi_dir() -> Path:
    """The shared ISBI 2012 EM sample (30 pairs of 512 x 512 uint8 PNG: images/, masks/)."""
    for folder in ("images", "masks"):
        require_shared_data("isbi2012", folder)
    return SHARED_DATA / "isbi2012"


def listing(folder: Path) -> list[str]:
    """Every path under ``folder`` (hidden temporary files included), relative, sorted."""
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*"))


@pytest.fixture
def list_files():
    """The :func:`listing` helper, for tests that check no stray (temporary) file was left behind."""
    return listing


@pytest.fixture
def make_affine():
    """The :func:`oblique_affine` helper."""
    return oblique_affine


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Tests train tiny networks: one intra-op thread is as fast, and on a shared 2-core machine two OpenMP threads
    per process wait on each other (measured here: 6 to 15 times slower)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_fit_settings() -> dict[str, dict]:
    """Per method, settings that fit a protector in a few steps on 32x32 crops: for tests of guarantees that do not
    depend on how well the protector learned (support, budget, determinism, resume)."""
    return {
        "umed": {"steps": 3, "batch_size": 2, "crop": 32, "base_channels": 4, "depth": 2, "surrogate_every": 2},
        "em": {"train_steps": 2, "train_noise_steps": 1, "steps": 2, "batch_size": 2, "crop": 32},
        "tap": {"train_steps": 2, "steps": 2, "batch_size": 2, "crop": 32},
        "sep": {"train_steps": 2, "checkpoints": 2, "steps": 2, "batch_size": 2, "crop": 32},
        "salm": {"train_steps": 2, "train_noise_steps": 1, "steps": 2, "batch_size": 2, "crop": 32, "k_fraction": 0.1},
        "lsp": {"patch": 4, "tile": 4},
        "ar": {"tile": 16},
        "random": {},
        "tile": {"train_steps": 2, "batch_size": 1, "crop": 16, "crop_depth": 8, "period": 4, "depth": 2},
    }


BRATS_CROP_CASES = ("brats_2013_pat0003_1", "brats_2013_pat0004_1")


@pytest.fixture(scope="session")
def brats_crops(tmp_path_factory: pytest.TempPathFactory, brats_dir: Path) -> tuple[Path, Path]:
    """Two real BraTS T1c cases cut to the 8 axial slices around the tumour centre, as NIfTI ``(images, masks)``
    folders; tests copy them (:func:`copy_dataset`) before changing anything."""
    folder = brats_dir
    root = tmp_path_factory.mktemp("brats_crops")
    images, masks = root / "images", root / "masks"
    images.mkdir(), masks.mkdir()
    for case in BRATS_CROP_CASES:
        image, mask = nib.load(folder / "t1c" / f"{case}.nii.gz"), nib.load(folder / "masks" / f"{case}.nii.gz")
        z = int(np.flatnonzero(np.asarray(mask.dataobj).any(axis=(0, 1))).mean())
        nib.save(image.slicer[:, :, z - 4 : z + 4], images / f"{case}.nii.gz")
        nib.save(mask.slicer[:, :, z - 4 : z + 4], masks / f"{case}.nii.gz")
    return images, masks


def copy_dataset(images: Path, masks: Path, target: Path) -> tuple[Path, Path]:
    """Copy an ``(images, masks)`` pair of folders to ``target/images`` and ``target/masks``."""
    import shutil

    return (Path(shutil.copytree(images, target / "images")), Path(shutil.copytree(masks, target / "masks")))


@pytest.fixture
def copy_data():
    """The :func:`copy_dataset` helper."""
    return copy_dataset


@pytest.fixture
def data(brats_crops, copy_data, tmp_path: Path) -> tuple[Path, Path]:
    """A writable copy of the two small real BraTS crops (images, masks): for protect runs that change their inputs
    (corrected masks, removed cases, bad files), as the resume and fault tests do."""
    return copy_data(*brats_crops, tmp_path / "in")


@pytest.fixture
def config(tiny_fit_settings):
    """``config(images, masks, out, **overrides)``: a ProtectConfig with the tiny UMed fit settings and seed 1, without
    the mark (these runs exercise the protector: the mark takes the whole budget and nothing is fitted)."""
    from umed.settings import ProtectConfig

    def make(images: Path, masks: Path, out: Path, **overrides) -> ProtectConfig:
        values = dict(
            images=images, masks=masks, out=out, seed=1, method_settings=tiny_fit_settings["umed"], mark=False
        )
        return ProtectConfig(**{**values, **overrides})

    return make


def _make_protected_phantoms(root: Path, *, n_cases: int = 3, shape=(32, 32, 8), seed: int = 0):
    """A phantom dataset and a copy with +-4/255 (of each case's percentile span) inside the structure:
    ``(images, protected, masks)``."""
    import numpy as np

    from umed.intensity import fit_mapping
    from umed.io import discover_cases, load_case, save_case
    from umed.phantom import make_phantom_dataset

    images, masks = make_phantom_dataset(root / "phantom", n_cases=n_cases, shape=shape, seed=seed)
    protected = root / "protected"
    protected.mkdir()
    rng = np.random.default_rng(0)
    for case in discover_cases(images, masks):
        image, meta = load_case(case.image_path)
        labels, _ = load_case(case.mask_path)
        change = (labels > 0) * rng.choice([-1.0, 1.0], image.shape) * 4 / 255 * fit_mapping(image).span
        save_case(image + change, meta, protected / case.image_path.name)
    return images, protected, masks


@pytest.fixture(scope="session")
def protected_phantoms():
    """``protected_phantoms(root, n_cases=3, shape=(32, 32, 8), seed=0)`` -> ``(images, protected, masks)``."""
    return _make_protected_phantoms


def write_disk_png(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """``root/images/a.png``: a 64x64 uint8 texture; ``root/masks/a.png``: a disk of radius 15 (255). Returns both."""
    from PIL import Image

    rng = np.random.default_rng(0)
    (root / "images").mkdir(), (root / "masks").mkdir()
    yy, xx = np.mgrid[:64, :64]
    image = np.clip(120 + 40 * np.sin(xx / 5.0) + rng.normal(0, 10, (64, 64)), 0, 255).astype(np.uint8)
    mask = (((yy - 32) ** 2 + (xx - 30) ** 2) < 15**2).astype(np.uint8) * 255
    Image.fromarray(image).save(root / "images" / "a.png")
    Image.fromarray(mask).save(root / "masks" / "a.png")
    return image, mask
