"""Fixtures of the verify tests: a phantom owner's clean cases, a key, and probes made from them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest


@dataclass
class Probes:
    images: Path
    masks: Path
    key_path: Path
    folder: Path
    manifest_path: Path

    @property
    def manifest(self):
        from umed.verify import load_probe_manifest

        return load_probe_manifest(self.manifest_path)

    @property
    def key(self):
        from umed.verify import load_key

        return load_key(self.key_path)


@pytest.fixture
def small_settings():
    from umed.verify import VerifySettings

    return VerifySettings.shipped().replace(controls=49, per_mark=2, radius=5, max_per_slice=6)


@pytest.fixture
def probes(tmp_path: Path, small_settings) -> Probes:
    """Probes from 2 phantoms (48x48x6) with 49 controls, 2 slots per mark."""
    from umed.phantom import make_phantom_dataset
    from umed.verify import MarkKey, make_probes, save_key

    images, masks = make_phantom_dataset(tmp_path / "owner", n_cases=2, shape=(48, 48, 6), seed=3)
    key_path = save_key(MarkKey(seed=987654321, family=small_settings.family, share=1.0), tmp_path / "key.json")
    from umed.verify import load_key

    make_probes(
        images, masks, load_key(key_path), tmp_path / "probes", tmp_path / "secret.json", small_settings, entropy=11
    )
    return Probes(images, masks, key_path, tmp_path / "probes", tmp_path / "secret.json")


def write_answers(probes: Probes, out: Path, *, learned: bool, hard: bool = False, seed: int = 0) -> Path:
    """A synthetic suspect's prediction files: structure probability 0.02 + noise everywhere, and (``learned``) 0.9
    in every slot holding the key's mark; NIfTI in the probes' geometry."""
    import nibabel as nib

    from umed.verify.slots import disk

    manifest = probes.manifest
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    design = manifest.design
    for entry in manifest.files:
        values = np.clip(0.02 + rng.normal(0, 0.01, entry.shape), 0, 1).astype(np.float32)
        if learned and entry.copy is not None:
            for placement in design.placements:
                if (placement.base, placement.copy) == (entry.base, entry.copy) and placement.mark == design.key_index:
                    rows, cols = placement.slot.box()
                    values[rows, cols, placement.slot.z][disk(placement.slot.radius)] = 0.9
        data = (values > 0.5).astype(np.uint8) if hard else values
        nib.save(nib.Nifti1Image(data, np.eye(4)), out / f"{entry.name}.nii.gz")
    return out
