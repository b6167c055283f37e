"""The mark-free test: an exact permutation test over the private split, ``--private-share`` in ``umed protect``,
and ``umed verify cases`` on files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from umed.errors import InputError
from umed.verify.cases import draw_private, permutation_test


def test_permutation_test_is_exact_under_the_null():
    """Scores that do not depend on the split: P(p <= a) <= a (exact enumeration, 10 cases, 3 private)."""
    rng = np.random.default_rng(0)
    p_values = []
    for _ in range(2000):
        scores = rng.beta(5, 2, size=10)  # whatever the distribution of the per-case scores
        private = rng.choice(10, size=3, replace=False)
        released = np.setdiff1d(np.arange(10), private)
        p_values.append(permutation_test(scores[released], scores[private], rng=rng).p_value)
    p_values = np.array(p_values)
    for level in (0.01, 0.05, 0.2, 0.5):
        assert np.mean(p_values <= level) <= level + 3 * np.sqrt(level * (1 - level) / 2000)


def test_permutation_test_smallest_p_and_random_splits():
    exact = permutation_test([0.9] * 4, [0.1, 0.2], rng=np.random.default_rng(0))
    assert exact.exact and exact.p_value == pytest.approx(1 / 15) and exact.min_p_value == pytest.approx(1 / 15)
    many = permutation_test([0.9] * 40, [0.1] * 10, rng=np.random.default_rng(0), random_splits=999)
    assert not many.exact and many.p_value == pytest.approx(1 / 1000)  # C(50, 10) splits: random ones, +1 rule


def test_draw_private_sizes():
    rng = np.random.default_rng(1)
    assert draw_private(["a", "b", "c", "d", "e"], 0.2, rng) in {(c,) for c in "abcde"}
    assert draw_private(["a", "b"], 0.9, rng) != ("a", "b") and draw_private(["a", "b"], 0.0, rng) == ()


@pytest.fixture
def release(tmp_path: Path):
    from umed.phantom import make_phantom_dataset
    from umed.protect import protect_dataset
    from umed.settings import ProtectConfig

    images, masks = make_phantom_dataset(tmp_path / "owner", n_cases=5, shape=(32, 32, 4), seed=6)
    summary = protect_dataset(ProtectConfig(images=images, masks=masks, out=tmp_path / "release", private_share=0.4))
    return images, masks, summary


def test_protect_keeps_the_private_cases_out_of_the_release(release, tmp_path: Path):
    from umed.verify import load_key

    images, masks, summary = release
    key = load_key(summary.key_path)
    assert len(key.private_cases) == 2 and summary.private_cases == key.private_cases
    written = {p.name.split(".")[0] for p in (tmp_path / "release").glob("*.nii.gz")}
    assert written == {p.name.split(".")[0] for p in images.glob("*.nii.gz")} - set(key.private_cases)
    manifest = json.loads((tmp_path / "release" / "manifest.json").read_text())
    assert not set(key.private_cases) & set(manifest["cases"])  # not even named in the release


def test_verify_cases_on_files(release, tmp_path: Path):
    """A suspect that fits the released cases perfectly and the private ones poorly gets the smallest p the split
    allows (1 / C(5, 2) = 0.1); one that fits all alike gets a large p; a key without private cases is refused."""
    import nibabel as nib

    from umed.io import discover_cases, load_case
    from umed.verify import MarkKey, load_key
    from umed.verify.cases import score_cases

    images, masks, summary = release
    key = load_key(summary.key_path)
    for name, fits_private in (("overfit", False), ("alike", True)):
        folder = tmp_path / name
        folder.mkdir()
        for case in discover_cases(images, masks):
            labels, _ = load_case(case.mask_path)
            answer = (labels > 0).astype(np.uint8)
            if case.case_id in key.private_cases and not fits_private:
                answer = np.roll(answer, 5, axis=0)  # a worse answer on the cases it never saw
            nib.save(nib.Nifti1Image(answer, np.eye(4)), folder / f"{case.case_id}.nii.gz")
        result = score_cases(images, masks, key, predictions=folder)
        if fits_private:
            assert result.test.p_value == pytest.approx(1.0) and "no evidence" in result.verdict()
        else:
            assert result.test.p_value == pytest.approx(0.1) and result.test.statistic > 0
    with pytest.raises(InputError, match="no private cases"):
        score_cases(images, masks, MarkKey(1, key.family, 1.0), predictions=tmp_path / "overfit")
