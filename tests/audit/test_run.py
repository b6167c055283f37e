"""``run_audit`` on a tiny phantom dataset and its protected copy: report contents, saved predictions, refusals."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from umed.audit import INCONCLUSIVE, NOT_PROTECTED, PARTLY_PROTECTED, PROTECTED, AuditConfig, run_audit
from umed.audit.verdict import MIX_NOT_PROTECTED, MIX_PROTECTED
from umed.errors import ConfigError, GeometryError, InputError
from umed.intensity import fit_mapping
from umed.io import load_case
from umed.metrics import dice, psnr
from umed.phantom import make_phantom_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory, protected_phantoms) -> tuple[Path, Path, Path]:
    return protected_phantoms(tmp_path_factory.mktemp("audit"))


def test_run_audit_writes_a_report_whose_numbers_recompute(dataset, tmp_path: Path) -> None:
    images, protected, masks = dataset
    out = tmp_path / "report"
    cfg = AuditConfig(
        clean=images,
        protected=protected,
        masks=masks,
        out=out,
        test_cases=("phantom_001",),
        epochs=2,
        size=32,
        batch_size=8,
        defenses=("none", "gaussian"),
    )
    report = run_audit(cfg)

    assert report.train_cases == ["phantom_000", "phantom_002"] and report.test_cases == ["phantom_001"]
    assert {p.name for p in out.iterdir()} == {"report.json", "report.md", "figures", "predictions.npz"}
    assert {p.name for p in (out / "figures").iterdir()} == {"examples.png", "curves.png", "dice.png"}
    document = json.loads((out / "report.json").read_text())
    assert document["settings"]["defenses"] == ["none", "gaussian"] and "torch" in document["versions"]

    saved = np.load(out / "predictions.npz")
    target = saved["test_labels"] > 0
    assert target.shape[1:] == (32, 32) and target.shape[0] == document["data"]["test_slices"]
    assert len(document["runs"]) == 2
    for run in document["runs"]:
        for kind in ("clean", "protected"):
            pred = saved[f"unet__{run['defense']}__{kind}"]
            assert run[kind]["last_dice"] == pytest.approx(dice(pred, target))
            assert run[kind]["best_dice"] == pytest.approx(max(run[kind]["test_dice"]))
            assert len(run[kind]["test_dice"]) == 2
        assert run["verdict"] in (NOT_PROTECTED, PROTECTED, PARTLY_PROTECTED, INCONCLUSIVE)
        for kind in ("clean", "protected"):  # nnU-Net's rule: validation case phantom_002 (of 000, 002)
            assert len(run[kind]["val_dice"]) == 2 and run[kind]["nnunet_epoch"] in (1, 2)
            assert run[kind]["nnunet_dice"] == run[kind]["test_dice"][run[kind]["nnunet_epoch"] - 1]
    assert document["threshold_floor"]["dice"] == pytest.approx(report.floor.dice)

    # imperceptibility: one mapping fitted on the clean image, applied to both
    case = next(c for c in report.cases if c.case_id == "phantom_000")
    clean, _ = load_case(images / "phantom_000.nii.gz")
    prot, _ = load_case(protected / "phantom_000.nii.gz")
    mapping = fit_mapping(clean)
    clean_u, prot_u = mapping.to_unit(clean), mapping.to_unit(prot)  # the arrays the audit measured
    assert case.psnr == pytest.approx(psnr(clean_u, prot_u, data_range=1.0))
    assert case.psnr == pytest.approx(peak_signal_noise_ratio(clean_u, prot_u, data_range=1.0), rel=1e-6)
    assert case.ssim == pytest.approx(structural_similarity(clean_u, prot_u, data_range=1.0), rel=1e-6)
    assert case.psnr_roi < case.psnr and case.max_abs_change_outside_roi_255 == 0.0
    assert 3.5 < case.max_abs_change_255 < 4.5 and case.role == "train"
    markdown = (out / "report.md").read_text()
    assert "Threshold floor" in markdown and "![dice](figures/dice.png)" in markdown
    assert report.runs[0].verdict in markdown and "nnU-Net" in markdown
    assert document["data"]["fit_cases"] + document["data"]["validation_cases"] in (
        ["phantom_000", "phantom_002"],
        ["phantom_002", "phantom_000"],
    )
    assert len(document["data"]["validation_cases"]) == 1


def test_mix_trains_a_victim_on_the_clean_half_alone(tmp_path: Path, protected_phantoms) -> None:
    images, protected, masks = protected_phantoms(tmp_path / "mix", n_cases=4)
    cfg = AuditConfig(
        clean=images,
        protected=protected,
        masks=masks,
        test_cases=("phantom_001",),
        epochs=2,
        size=32,
        batch_size=8,
        defenses=("mix",),
        validation=False,
    )
    run = run_audit(cfg).runs[0]
    half = run.clean_half
    assert (
        half is not None and half.defense == "none" and half.details["groups"] == run.protected.details["clean_groups"]
    )
    assert len(half.details["groups"]) == 2 and half.n_train < run.protected.n_train  # round(0.5 * 3) of 3 made clean
    assert run.verdict in (MIX_PROTECTED, MIX_NOT_PROTECTED)
    assert run.mix_gain["last"] == pytest.approx(run.protected.last_dice - half.last_dice)
    assert "nnunet" not in run.mix_gain  # validation=False: no nnU-Net rule


def test_split_quick_and_2d_images(tmp_path: Path) -> None:
    images, masks = make_phantom_dataset(tmp_path / "p2", n_cases=4, ndim=2, shape=(32, 32), seed=1)
    cfg = AuditConfig(
        clean=images,
        protected=images,
        masks=masks,
        split=0.25,
        quick=True,
        size=32,
        epochs=1,
        victims=("unet", "segresnet"),
    )
    assert cfg.effective().victims == ("unet",) and cfg.effective().size == 32
    report = run_audit(cfg)
    assert len(report.test_cases) == 1 and not set(report.test_cases) & set(report.train_cases)
    assert report.data["ndim"] == 2 and report.data["train_slices"] == 2 and report.data["validation_slices"] == 1
    assert math.isinf(report.cases[0].psnr) and report.imperceptibility["unchanged_cases"] == 4
    assert [r.victim for r in report.runs] == ["unet"]
    assert report.paths == {}  # no out: nothing written


def test_unet3d_trains_on_resampled_volumes(dataset, tmp_path: Path) -> None:
    images, protected, masks = dataset
    report = run_audit(
        AuditConfig(
            clean=images,
            protected=protected,
            masks=masks,
            out=tmp_path / "r3",
            test_cases="phantom_002",
            victims="unet3d",
            epochs=1,
            size=32,
        )
    )
    saved = np.load(tmp_path / "r3" / "predictions.npz")
    assert saved["test_labels_3d"].shape == (1, 16, 16, 16) and report.data["patch_3d"] == [16, 16, 16]
    for kind in ("clean", "protected"):
        pred = saved[f"unet3d__none__{kind}"]
        assert getattr(report.runs[0], kind).last_dice == dice(pred, saved["test_labels_3d"] > 0)


def test_native_resolution_trains_on_patches_and_tests_full_slices(tmp_path: Path, protected_phantoms) -> None:
    images, protected, masks = protected_phantoms(tmp_path / "native", shape=(72, 72, 6))
    out = tmp_path / "report"
    report = run_audit(
        AuditConfig(
            clean=images,
            protected=protected,
            masks=masks,
            out=out,
            test_cases=("phantom_001",),
            epochs=1,
            crop=32,
            batch_size=8,
            defenses=("none", "intensity", "downsample"),
        )
    )
    saved = np.load(out / "predictions.npz")
    assert saved["test_labels"].shape[1:] == (80, 80)  # 72 edge-padded to a multiple of 16, no resampling
    assert report.data["size"] == "native" and "32, 32" in report.data["resampling"]
    for run in report.runs:
        assert run.protected.last_dice == pytest.approx(
            dice(saved[f"unet__{run.defense}__protected"], saved["test_labels"] > 0)
        )
    assert "native 80x80" in (out / "report.md").read_text()


def test_unet3d_at_native_resolution_uses_sliding_windows(dataset, tmp_path: Path) -> None:
    images, protected, masks = dataset
    report = run_audit(
        AuditConfig(
            clean=images,
            protected=protected,
            masks=masks,
            out=tmp_path / "r3n",
            test_cases="phantom_002",
            victims="unet3d",
            epochs=1,
            crop3d=16,
        )
    )
    saved = np.load(tmp_path / "r3n" / "predictions.npz")
    labels = saved["test_labels_3d"]
    assert labels.shape[1:] == tuple(report.data["volume_shape"]) and all(n % 8 == 0 for n in labels.shape[1:])
    assert report.data["patch_3d"] == [16, 16, 16]
    for kind in ("clean", "protected"):
        assert getattr(report.runs[0], kind).last_dice == dice(saved[f"unet3d__none__{kind}"], labels > 0)


def test_clean_cache_reuses_the_clean_runs(dataset, tmp_path: Path) -> None:
    images, protected, masks = dataset
    settings = dict(
        clean=images,
        protected=protected,
        masks=masks,
        test_cases=("phantom_001",),
        epochs=1,
        size=32,
        batch_size=8,
        clean_cache=tmp_path / "cache",
    )
    first = run_audit(AuditConfig(**settings))
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    second = run_audit(AuditConfig(**settings))
    assert second.runs[0].clean.details.get("from_clean_cache")
    assert second.runs[0].clean.test_dice == first.runs[0].clean.test_dice
    np.testing.assert_array_equal(second.runs[0].clean.predictions, first.runs[0].clean.predictions)
    assert second.runs[0].protected.test_dice == first.runs[0].protected.test_dice  # protected runs always train
    other = run_audit(AuditConfig(**{**settings, "seed": 1}))  # other settings: another key, trained anew
    assert not other.runs[0].clean.details.get("from_clean_cache")
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2


def test_a_protected_folder_with_only_the_training_cases(dataset, tmp_path: Path) -> None:
    """A data owner protects only what is released: the cases missing from the protected folder are the test cases
    (read clean, as always), named or not; the imperceptibility is over the protected cases only."""
    images, protected, masks = dataset
    released = tmp_path / "released"
    released.mkdir()
    for name in ("phantom_000.nii.gz", "phantom_001.nii.gz"):
        (released / name).write_bytes((protected / name).read_bytes())
    for test_cases in (None, ("phantom_002",)):
        cfg = AuditConfig(clean=images, protected=released, masks=masks, test_cases=test_cases, quick=True, epochs=1)
        report = run_audit(cfg)
        assert report.test_cases == ["phantom_002"] and report.train_cases == ["phantom_000", "phantom_001"]
        assert math.isfinite(report.imperceptibility["psnr"]) and report.imperceptibility["unchanged_cases"] == 0
        assert any("never protected" in note for note in report.notes)


def test_refusals(dataset, tmp_path: Path, protected_phantoms) -> None:
    images, protected, masks = dataset
    with pytest.raises(ConfigError, match="not both"):
        AuditConfig(clean=images, protected=protected, masks=masks, test_cases=("phantom_000",), split=0.3)
    with pytest.raises(ConfigError, match="victim: unknown name"):
        AuditConfig(clean=images, protected=protected, masks=masks, victims=("resnet",))
    with pytest.raises(ConfigError, match="defense: unknown name"):
        AuditConfig(clean=images, protected=protected, masks=masks, defenses="none,cutout")
    with pytest.raises(ConfigError, match="multiple of 16"):
        AuditConfig(clean=images, protected=protected, masks=masks, size=40)
    with pytest.raises(ConfigError, match="unknown case ids"):
        run_audit(AuditConfig(clean=images, protected=protected, masks=masks, test_cases=("nope",)))
    with pytest.raises(ConfigError, match="inside the input folder"):
        run_audit(AuditConfig(clean=images, protected=protected, masks=masks, out=images / "report"))

    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "phantom_000.nii.gz").write_bytes((protected / "phantom_000.nii.gz").read_bytes())
    with pytest.raises(InputError, match=r"training case\(s\) \['phantom_001'\] have no protected version"):
        run_audit(AuditConfig(clean=images, protected=partial, masks=masks, test_cases=("phantom_002",)))

    other = protected_phantoms(tmp_path / "other", shape=(32, 32, 6))[1]
    with pytest.raises(GeometryError, match="differs in shape"):
        run_audit(AuditConfig(clean=images, protected=other, masks=masks))


@pytest.mark.slow
def test_audit_with_a_key_tests_every_victim_for_the_mark(tmp_path: Path) -> None:
    """``key``: the clean and the protected victim of every run get the mark test (p-values in (0, 1], on
    probabilities and on hard masks), in the report's JSON and markdown."""
    import json

    from umed.protect import protect_dataset
    from umed.settings import ProtectConfig

    images, masks = make_phantom_dataset(tmp_path / "p", n_cases=3, shape=(48, 48, 6), seed=4)
    summary = protect_dataset(ProtectConfig(images=images, masks=masks, out=tmp_path / "released"))
    cfg = AuditConfig(
        clean=images,
        protected=tmp_path / "released",
        masks=masks,
        test_cases=("phantom_002",),
        epochs=1,
        crop=32,
        validation=False,
        key=summary.key_path,
        out=tmp_path / "report",
    )
    report = run_audit(cfg)
    for victim_run in (report.runs[0].clean, report.runs[0].protected):
        test = victim_run.details["verify"]
        assert 0 < test["p_soft"] <= 1 and 0 < test["p_hard"] <= 1 and test["controls"] == 999
    saved = json.loads((tmp_path / "report" / "report.json").read_text())
    assert "verify" in json.dumps(saved) and "Mark test" in (tmp_path / "report" / "report.md").read_text()
