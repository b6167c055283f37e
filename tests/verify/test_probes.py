"""``umed verify probes``: probe files in the cases' own format, a secret manifest, only the slots changed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from umed.errors import InputError, OutputError


def test_probes_keep_format_header_and_change_only_slots(probes):
    import nibabel as nib

    from umed.io import discover_cases, load_case
    from umed.verify.slots import disk

    manifest = probes.manifest
    bases = {case.case_id: case for case in discover_cases(probes.images, probes.masks)}
    names = sorted(p.name for p in probes.folder.iterdir())
    assert names == sorted(f"{f.name}.nii.gz" for f in manifest.files)
    assert len([f for f in manifest.files if f.copy is None]) == 2  # the unmarked bases are probes too
    for entry in manifest.files:
        base_path = bases[manifest.bases[entry.base]].image_path
        original, _ = load_case(base_path)
        probe, meta = load_case(probes.folder / f"{entry.name}.nii.gz")
        assert probe.shape == original.shape and meta.disk_dtype == load_case(base_path)[1].disk_dtype
        np.testing.assert_array_equal(
            nib.load(probes.folder / f"{entry.name}.nii.gz").affine, nib.load(base_path).affine
        )
        changed = probe != original
        if entry.copy is None:
            assert not changed.any()
            continue
        allowed = np.zeros(original.shape, bool)
        for p in manifest.design.placements:
            if (p.base, p.copy) == (entry.base, entry.copy):
                rows, cols = p.slot.box()
                allowed[rows, cols, p.slot.z] |= disk(p.slot.radius)
        assert changed.any() and not (changed & ~allowed).any()


def test_every_mark_gets_the_same_number_of_slots_and_the_key_is_hidden(probes, small_settings):
    design = probes.manifest.design
    counts = np.bincount([p.mark for p in design.placements], minlength=len(design.seeds))
    assert len(design.seeds) == small_settings.controls + 1 and set(counts) == {small_settings.per_mark}
    assert design.seeds[design.key_index] == probes.key.seed
    # nothing in the probe folder names the key or the bases
    assert all(path.name.startswith("probe_") for path in probes.folder.iterdir())
    assert str(probes.key.seed) not in "".join(path.name for path in probes.folder.iterdir())


def test_probes_are_reproducible_from_the_recorded_entropy(probes, tmp_path, small_settings):
    from umed.verify import make_probes

    again = make_probes(
        probes.images, probes.masks, probes.key, tmp_path / "again", tmp_path / "again.json", small_settings, entropy=11
    )
    assert again.manifest.to_dict() == probes.manifest.to_dict()
    assert json.loads(probes.manifest_path.read_text())["entropy"] == "11"


def test_probe_errors_name_the_problem(probes, tmp_path, small_settings):
    from umed.verify import make_probes

    with pytest.raises(OutputError, match="not empty"):
        make_probes(probes.images, probes.masks, probes.key, probes.folder, tmp_path / "m.json", small_settings)
    with pytest.raises(OutputError, match="secret"):
        make_probes(
            probes.images, probes.masks, probes.key, tmp_path / "new", tmp_path / "new" / "m.json", small_settings
        )
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no images"):
        make_probes(empty, None, probes.key, tmp_path / "p2", tmp_path / "m2.json", small_settings)
    assert not (tmp_path / "p2").exists()


def test_png_probes(tmp_path: Path, small_settings):
    from PIL import Image

    from umed.io import load_case
    from umed.verify import MarkKey, make_probes

    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(), masks.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        image = np.clip(120 + rng.normal(0, 10, (96, 96)), 0, 255).astype(np.uint8)
        mask = np.zeros((96, 96), np.uint8)
        mask[10:30, 10:30] = 1
        Image.fromarray(image).save(images / f"c{i}.png")
        Image.fromarray(mask).save(masks / f"c{i}.png")
    key = MarkKey(seed=5, family=small_settings.family, share=1.0)
    run = make_probes(images, masks, key, tmp_path / "probes", tmp_path / "m.json", small_settings, entropy=1)
    probe, meta = load_case(next(iter(sorted((tmp_path / "probes").iterdir()))))
    assert meta.format == "png" and probe.dtype == np.uint8 and probe.shape == (96, 96)
    assert run.slots == (small_settings.controls + 1) * small_settings.per_mark
