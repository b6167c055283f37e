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
