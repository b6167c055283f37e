"""``umed verify score``: the test on a suspect's answers; bad input gets a clear error."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.verify.conftest import write_answers  # noqa: I001
from umed.errors import InputError


def test_a_suspect_that_learned_the_key_is_caught(probes, tmp_path):
    from umed.verify import score_with

    answers = write_answers(probes, tmp_path / "answers", learned=True)
    result = score_with(probes.manifest, probes.key, probes.folder, predictions=answers)
    assert result.test.rank == 1 and result.p_value == pytest.approx(1 / 50) and result.soft
    assert result.trained_on is False  # 1/50 is above 0.01: the smallest p this design can give
    assert score_with(probes.manifest, probes.key, probes.folder, predictions=answers, alpha=0.05).trained_on
    assert "ranks 1 of 50" in result.verdict()


def test_hard_masks_are_scored_too(probes, tmp_path):
    from umed.verify import score_with

    answers = write_answers(probes, tmp_path / "answers", learned=True, hard=True)
    result = score_with(probes.manifest, probes.key, probes.folder, predictions=answers)
    assert not result.soft and result.test.rank == 1


def test_an_innocent_suspect_is_not_accused(probes, tmp_path):
    from umed.verify import score_with

    p_values = [
        score_with(
            probes.manifest,
            probes.key,
            probes.folder,
            predictions=write_answers(probes, tmp_path / f"a{s}", learned=False, seed=s),
        ).p_value
        for s in range(3)
    ]
    assert min(p_values) > 0.02


def test_wrong_key_missing_and_mismatched_predictions(probes, tmp_path):
    from umed.verify import MarkKey, score_with

    answers = write_answers(probes, tmp_path / "answers", learned=True)
    other = MarkKey(seed=probes.key.seed + 1, family=probes.key.family, share=1.0)
    with pytest.raises(InputError, match="wrong key"):
        score_with(probes.manifest, other, probes.folder, predictions=answers)
    # too few probes answered: every missing one is counted, the first named
    partial = Path(shutil.copytree(answers, tmp_path / "partial"))
    removed = sorted(partial.iterdir())[:3]
    for path in removed:
        path.unlink()
    with pytest.raises(InputError, match="too few probes: 3 of"):
        score_with(probes.manifest, probes.key, probes.folder, predictions=partial)
    # a shape mismatch names the file
    import nibabel as nib

    bad = Path(shutil.copytree(answers, tmp_path / "bad"))
    victim = sorted(bad.iterdir())[0]
    nib.save(nib.Nifti1Image(np.zeros((5, 5, 5), np.float32), np.eye(4)), victim)
    with pytest.raises(InputError, match=f"{victim.name}: prediction shape"):
        score_with(probes.manifest, probes.key, probes.folder, predictions=bad)
    # a changed probe file is refused
    probe = sorted(probes.folder.iterdir())[0]
    probe.write_bytes(probe.read_bytes()[:-10])
    with pytest.raises(InputError, match="changed since"):
        score_with(probes.manifest, probes.key, probes.folder, predictions=answers)


def test_a_bad_key_file_is_named(tmp_path):
    from umed.verify import load_key

    with pytest.raises(InputError, match="umed mark key not found"):
        load_key(tmp_path / "missing.json")
    (tmp_path / "k.json").write_text('{"format": "something else"}')
    with pytest.raises(InputError, match="k.json.*not|k.json: expected"):
        load_key(tmp_path / "k.json")


def test_model_and_predict_command(probes, tmp_path):
    """--model runs a TorchScript network on the probes; --predict runs a command that writes predictions."""
    import sys

    import torch
    from monai.networks.nets import UNet

    from umed.verify import score_with

    torch.manual_seed(0)
    net = UNet(2, 1, 2, (4, 8), (2,), num_res_units=0).eval()
    torch.jit.script(net).save(str(tmp_path / "model.ts"))
    result = score_with(probes.manifest, probes.key, probes.folder, model=tmp_path / "model.ts")
    assert result.soft and 0 < result.p_value <= 1 and result.probes == len(probes.manifest.files)

    answers = write_answers(probes, tmp_path / "answers", learned=True)
    copy = "import shutil,sys; shutil.copytree(sys.argv[1], sys.argv[2], dirs_exist_ok=True)"
    command = f'{sys.executable} -c "{copy}" {answers} {{out}} {{in}}'
    result = score_with(probes.manifest, probes.key, probes.folder, predict=command)
    assert result.test.rank == 1
    with pytest.raises(InputError, match="exited with"):
        score_with(
            probes.manifest,
            probes.key,
            probes.folder,
            predict=f"{sys.executable} -c 'raise SystemExit(3)' {{in}} {{out}}",
        )
    with pytest.raises(InputError, match="TorchScript"):
        score_with(probes.manifest, probes.key, probes.folder, model=probes.key_path)
