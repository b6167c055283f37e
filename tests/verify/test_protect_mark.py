"""The mark inside ``umed protect``: the key stays out of the release, the mark stays in the structure, the budget
and the byte guarantees hold, and the key is reused, never silently replaced."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import numpy as np
import pytest

from umed.errors import ConfigError


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from umed.phantom import make_phantom_dataset

    return make_phantom_dataset(tmp_path_factory.mktemp("mark"), n_cases=2, shape=(40, 40, 6), seed=2)


def _protect(images: Path, masks: Path, out: Path, **overrides):
    from umed.protect import protect_dataset
    from umed.settings import ProtectConfig

    return protect_dataset(ProtectConfig(images=images, masks=masks, out=out, **overrides))


def test_default_run_marks_and_keeps_the_key_outside_the_release(phantoms, tmp_path: Path):
    from umed.io import discover_cases, load_case
    from umed.verify import load_key

    images, masks = phantoms
    summary = _protect(images, masks, tmp_path / "release")
    key_path = tmp_path / "release.umed-key.json"
    assert summary.key_path == key_path and key_path.is_file()
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    key = load_key(key_path)
    released = "".join(p.read_text(errors="ignore") for p in (tmp_path / "release").rglob("*.json"))
    assert str(key.seed) not in released and "umed-key" not in released
    manifest = json.loads((tmp_path / "release" / "manifest.json").read_text())
    assert manifest["mark"] is True and manifest["resume_key"]["mark_key"] == key.fingerprint
    assert not (tmp_path / "release" / "protector.json").exists()  # the mark takes the whole budget: no fit
    for case in discover_cases(images, masks):
        original, _ = load_case(case.image_path)
        labels, _ = load_case(case.mask_path)
        written, _ = load_case(tmp_path / "release" / case.image_path.name)
        changed = written != original
        assert changed.any() and not (changed & (labels == 0)).any()  # only the structure (masks never change)
        assert manifest["cases"][case.case_id]["metrics"]["psnr"] >= 50.0 - 1e-6


def test_the_key_is_reused_and_the_same_key_gives_the_same_bytes(phantoms, tmp_path: Path):
    images, masks = phantoms
    key = tmp_path / "owner.key.json"
    _protect(images, masks, tmp_path / "a", key_out=key)
    first = key.read_bytes()
    _protect(images, masks, tmp_path / "b", key_out=key)
    assert key.read_bytes() == first
    for path in sorted((tmp_path / "a").glob("*.nii.gz")):
        assert path.read_bytes() == (tmp_path / "b" / path.name).read_bytes()
    # another key is another mark: a resumed OUT refuses it instead of mixing two keys
    other = tmp_path / "other.key.json"
    with pytest.raises(ConfigError):
        _protect(images, masks, tmp_path / "a", key_out=other)


def test_no_mark_and_a_key_inside_the_release(phantoms, tmp_path: Path):
    images, masks = phantoms
    summary = _protect(images, masks, tmp_path / "plain", mark=False, method="random")
    assert summary.key_path is None and not (tmp_path / "plain.umed-key.json").exists()
    with pytest.raises(ConfigError, match="must not lie inside"):
        _protect(images, masks, tmp_path / "x", key_out=tmp_path / "x" / "key.json")


def test_a_release_verified_end_to_end(phantoms, tmp_path: Path):
    """protect -> probes from other (never released) cases -> a suspect that answers the key's mark -> rank 1."""
    from tests.verify.conftest import Probes, write_answers
    from umed.phantom import make_phantom_dataset
    from umed.verify import VerifySettings, load_key, make_probes, score_with

    images, masks = phantoms
    summary = _protect(images, masks, tmp_path / "release")
    private_images, private_masks = make_phantom_dataset(tmp_path / "private", n_cases=2, shape=(48, 48, 6), seed=9)
    settings = VerifySettings.shipped().replace(controls=19, per_mark=2, radius=5)
    key = load_key(summary.key_path)
    make_probes(private_images, private_masks, key, tmp_path / "probes", tmp_path / "secret.json", settings)
    probes = Probes(private_images, private_masks, summary.key_path, tmp_path / "probes", tmp_path / "secret.json")
    answers = write_answers(probes, tmp_path / "answers", learned=True)
    result = score_with(probes.manifest, key, probes.folder, predictions=answers)
    assert result.test.rank == 1 and result.p_value == pytest.approx(1 / 20)
    assert np.isfinite(result.test.effect)


def test_a_marked_release_restores_bit_for_bit(phantoms, tmp_path: Path):
    """The restore key of issue 23 gives the originals back from a marked release too."""
    from umed.protect import protect_dataset
    from umed.protect.restore import restore_dataset
    from umed.settings import ProtectConfig

    images, masks = phantoms
    protect_dataset(
        ProtectConfig(images=images, masks=masks, out=tmp_path / "release"), restore_key=tmp_path / "restore.key"
    )
    restore_dataset(tmp_path / "release", tmp_path / "restore.key", tmp_path / "originals")
    for path in sorted(images.iterdir()):
        assert (tmp_path / "originals" / path.name).read_bytes() == path.read_bytes()


def test_a_saved_protector_with_the_whole_budget_mark_is_refused(phantoms, tmp_path: Path):
    """``--protector`` with the shipped mark (which takes the whole budget) would silently not apply the protector."""
    images, masks = phantoms
    fitted = _protect(images, masks, tmp_path / "fit", mark=False, method="random")
    with pytest.raises(ConfigError, match="--no-mark"):
        _protect(images, masks, tmp_path / "again", protector=fitted.protector_path)


@pytest.mark.parametrize("key_seed", [1, 2, 3, 4])
def test_the_mark_keeps_the_budget_on_8bit_images(tmp_path: Path, key_seed: int):
    """PNG (uint8): every key's mark, truncated to whole grey levels, keeps the image at or above 50 dB, changes
    only the structure, and reaches 50 dB within 0.5 dB unless the L-inf cap binds (the documented exception)."""
    from PIL import Image

    from tests.conftest import write_disk_png
    from umed.protect import protect_dataset
    from umed.settings import ProtectConfig
    from umed.verify import MarkKey, VerifySettings, save_key

    image, mask = write_disk_png(tmp_path)
    settings = VerifySettings.shipped()
    key = save_key(MarkKey(key_seed, settings.family, 1.0), tmp_path / "k.json")
    cfg = ProtectConfig(
        images=tmp_path / "images",
        masks=tmp_path / "masks",
        out=tmp_path / "out",
        key_out=key,
        target_psnr=50.0,
        intensity_mode="window",
        window=(0, 255),
    )
    (result,) = protect_dataset(cfg).results
    written = np.asarray(Image.open(tmp_path / "out" / "a.png")).astype(np.float64)
    measured = 10 * np.log10(255.0**2 / np.mean((written - image) ** 2))
    assert measured >= 50.0 and not ((written != image) & (mask == 0)).any()
    cap_binds = np.abs(written - image).max() >= cfg.eps_cap * 255 - 1
    assert measured < 50.5 or cap_binds
