"""umed.protect.protector_io: save/load/export a protector; weights read with weights_only=True and checked by
SHA-256."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from umed.errors import ConfigError, InputError
from umed.protect.protector_io import export_protector, load_protector, save_protector
from umed.protectors import make_protector
from umed.protectors.base import Budget, SliceBatch


def _batch() -> SliceBatch:
    rng = np.random.default_rng(0)
    images = rng.random((2, 32, 32), dtype=np.float32)
    structures = np.zeros((2, 32, 32), bool)
    structures[:, 10:20, 12:22] = True
    return SliceBatch(images, structures, ["a/0", "a/1"])


@pytest.fixture(scope="module")
def fitted():
    protector = make_protector(
        "umed", Budget(8 / 255, 6 / 255, 2), seed=4, steps=2, crop=32, batch_size=2, base_channels=4
    )
    protector.fit(_batch())
    return protector


def test_round_trip_and_export_give_identical_perturbations(fitted, tmp_path: Path) -> None:
    path = save_protector(fitted, tmp_path / "protector.json", extra={"target_psnr": 50.0})
    loaded, document = load_protector(path)
    assert document["method"] == "umed" and document["target_psnr"] == 50.0 and document["weights_sha256"]
    np.testing.assert_array_equal(loaded.perturb(_batch()), fitted.perturb(_batch()))
    exported = export_protector(path, tmp_path / "exported")
    again, doc2 = load_protector(exported)
    assert doc2["target_psnr"] == 50.0
    np.testing.assert_array_equal(again.perturb(_batch()), fitted.perturb(_batch()))


def test_model_free_protector_has_no_weights(tmp_path: Path) -> None:
    path = save_protector(make_protector("random", Budget(), seed=1), tmp_path / "protector.json")
    assert not path.with_suffix(".pt").exists()
    loaded, _ = load_protector(tmp_path)  # a folder holding protector.json
    assert loaded.name == "random"


def test_tampered_missing_or_foreign_files_are_refused(fitted, tmp_path: Path) -> None:
    path = save_protector(fitted, tmp_path / "protector.json")
    weights = path.with_suffix(".pt")
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(InputError, match="protector.pt: SHA-256"):
        load_protector(path)
    weights.unlink()
    with pytest.raises(InputError, match="weights are missing"):
        load_protector(path)
    foreign = tmp_path / "other.json"
    foreign.write_text(json.dumps({"format": "something"}))
    with pytest.raises(ConfigError, match="not a umed protector"):
        load_protector(foreign)
    with pytest.raises(InputError, match="nothing.json"):
        load_protector(tmp_path / "nothing.json")
