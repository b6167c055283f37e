"""umed.protect.apply: applying a fitted protector to one image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from umed.errors import ProtectorError
from umed.intensity import fit_mapping
from umed.io import load_case, load_mask
from umed.phantom import make_phantom_dataset
from umed.protect import protect_array, structure_slices
from umed.protectors import Budget, SliceBatch, make_protector


def test_a_diverged_protector_is_refused_not_written(tmp_path: Path, tiny_fit_settings) -> None:
    """A UMed fit whose generator weights went NaN (as a diverging fit leaves them) must fail the case with a clear
    error: np.clip keeps NaN, and a NaN volume once reached a victim as "perfectly protected" (Dice 0)."""
    images, masks = make_phantom_dataset(tmp_path, n_cases=1, shape=(48, 48, 8), image_dtype="float32")
    image, meta = load_case(images / "phantom_000.nii.gz")
    labels, _ = load_mask(masks / "phantom_000.nii.gz", image_meta=meta)
    structure, indices = structure_slices(labels, None)
    mapping = fit_mapping(image)
    unit = np.moveaxis(mapping.to_unit(image), -1, 0)[indices].astype(np.float32)
    batch = SliceBatch(unit, np.moveaxis(structure, -1, 0)[indices], [f"phantom_000/{z}" for z in indices])
    protector = make_protector("umed", Budget(4 / 255, 8 / 255, 3), seed=0, **tiny_fit_settings["umed"])
    protector.fit(batch)
    finite = protect_array(image, labels, meta, protector, mapping=mapping)
    assert np.isfinite(finite.array).all() and not np.array_equal(finite.array, image)

    with torch.no_grad():
        next(protector.contour.parameters()).fill_(float("nan"))
    with pytest.raises(ProtectorError, match=r"phantom_000: the umed protector produced non-finite changes"):
        protect_array(image, labels, meta, protector, mapping=mapping)


def test_output_keeps_the_input_memory_order() -> None:
    """A Fortran-ordered volume (what nibabel and umed.io load) stays Fortran-ordered: copying it to C order cost
    seconds on a CT and made every slice write a strided gather."""
    from umed.case import CaseMeta
    from umed.protect.apply import _write_in_file_units

    image = np.asfortranarray(np.random.default_rng(0).normal(size=(6, 5, 4)).astype(np.float32))
    delta = [np.full((1, 6, 5), 0.01, np.float32)]
    meta = CaseMeta("c", None, "nifti", image.shape, np.eye(4), (1.0, 1.0, 1.0), np.dtype(np.float32), 1.0, 0.0, None)
    out = _write_in_file_units(image, delta, [[2]], meta, 1.0)
    assert out.flags["F_CONTIGUOUS"]
    np.testing.assert_array_equal(out[..., [0, 1, 3]], image[..., [0, 1, 3]])
    np.testing.assert_allclose(out[..., 2], image[..., 2] + 0.01, atol=1e-6)
