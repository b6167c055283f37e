"""`umed protect`, `umed export-protector` and `umed demo` through Typer's CliRunner (exit codes, output, files)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from umed.cli import app
from umed.phantom import make_phantom_dataset

runner = CliRunner()


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("phantoms")
    images, masks = make_phantom_dataset(root / "data", n_cases=2, ndim=3, shape=(40, 40, 8), seed=1)
    config = root / "tiny.yaml"
    config.write_text(
        "method: umed\ntarget_psnr: 50\nmark: false\n"  # the protector's runs; the mark: tests/verify
        "method_settings: {steps: 2, crop: 32, batch_size: 2, base_channels: 4}\n"
    )
    return images, masks, config


def test_protect_writes_cases_manifest_and_table(phantoms, tmp_path: Path) -> None:
    images, masks, config = phantoms
    result = runner.invoke(
        app, ["protect", str(images), "--masks", str(masks), "--out", str(tmp_path / "out"), "--config", str(config)]
    )
    assert result.exit_code == 0, result.output
    assert "phantom_000" in result.output and "protected" in result.output
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert set(manifest["cases"]) == {"phantom_000", "phantom_001"}
    assert all(entry["metrics"]["psnr"] >= 50 for entry in manifest["cases"].values())
    assert (tmp_path / "out" / "protector.json").is_file() and (tmp_path / "out" / "protector.pt").is_file()


def test_saved_and_exported_protector_reproduce_the_same_bytes(phantoms, tmp_path: Path) -> None:
    images, masks, config = phantoms
    first = tmp_path / "first"
    assert (
        runner.invoke(app, ["protect", str(images), "-m", str(masks), "-o", str(first), "-c", str(config)]).exit_code
        == 0
    )
    exported = tmp_path / "exported"
    result = runner.invoke(app, ["export-protector", str(first / "protector.json"), "--to", str(exported)])
    assert result.exit_code == 0, result.output
    second = tmp_path / "second"
    result = runner.invoke(
        app,
        [
            "protect",
            *(str(images), "-m", str(masks), "-o", str(second)),
            *("--protector", str(exported / "protector.json"), "--no-mark"),
        ],
    )
    assert result.exit_code == 0, result.output
    for case in ("phantom_000", "phantom_001"):
        name = next(p.name for p in first.iterdir() if p.name.startswith(case))
        assert (first / name).read_bytes() == (second / name).read_bytes()


def test_bad_case_is_reported_and_exit_code_is_one(phantoms, tmp_path: Path) -> None:
    images, masks, config = phantoms
    bad_images, bad_masks = tmp_path / "images", tmp_path / "masks"
    bad_images.mkdir(), bad_masks.mkdir()
    for source in images.iterdir():
        (bad_images / source.name).symlink_to(source)
    for source in masks.iterdir():
        (bad_masks / source.name).symlink_to(source)
    (bad_images / "truncated.nii.gz").write_bytes((images / "phantom_000.nii.gz").read_bytes()[:200])
    (bad_masks / "truncated.nii.gz").symlink_to(masks / "phantom_000.nii.gz")
    result = runner.invoke(
        app, ["protect", str(bad_images), "-m", str(bad_masks), "-o", str(tmp_path / "out"), "-c", str(config)]
    )
    assert result.exit_code == 1
    assert "truncated.nii.gz" in result.output
    assert not (tmp_path / "out" / "truncated.nii.gz").exists()
    assert (tmp_path / "out" / "phantom_000.nii.gz").exists() or any((tmp_path / "out").glob("phantom_000*"))


def test_output_inside_input_and_bad_config_fail_with_one_line(phantoms, tmp_path: Path) -> None:
    images, masks, config = phantoms
    result = runner.invoke(
        app, ["protect", str(images), "-m", str(masks), "-o", str(images / "out"), "-c", str(config)]
    )
    assert result.exit_code == 1 and str(images) in result.output
    assert "Traceback" not in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("epsilon_typo: 3\n")
    result = runner.invoke(app, ["protect", str(images), "-m", str(masks), "-o", str(tmp_path / "o"), "-c", str(bad)])
    assert result.exit_code == 1 and "epsilon_typo" in result.output
    result = runner.invoke(
        app, ["protect", str(images), "-m", str(masks), "-o", str(tmp_path / "o2"), "--method", "nope"]
    )
    assert result.exit_code == 1 and "unknown name 'nope'" in result.output


@pytest.mark.parametrize(
    "line, message",
    [
        ("band_width: three", "band_width: expected a whole number (got 'three')"),
        ("target_psnr: fifty", "target_psnr: expected a number (got 'fifty')"),
        ("eps_contour: 4/0", "eps_contour: expected a number or a fraction like 8/255 (got '4/0')"),
        ("seed: abc", "seed: expected a whole number (got 'abc')"),
        ("structure_labels: 1", "structure_labels: expected a list such as [1, 3, 4] (got 1)"),
        ("method_settings: 5", "method_settings: expected a mapping such as {steps: 300} (got 5)"),
    ],
)
def test_config_value_of_the_wrong_type_is_one_clear_line(phantoms, tmp_path: Path, line: str, message: str) -> None:
    images, masks, _ = phantoms
    config = tmp_path / "bad.yaml"
    config.write_text(line + "\n")
    result = runner.invoke(
        app, ["protect", str(images), "-m", str(masks), "-o", str(tmp_path / "o"), "-c", str(config)]
    )
    assert result.exit_code == 1, result.output
    assert f"bad.yaml: {message}" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not (tmp_path / "o").exists()


def test_zero_byte_files_and_out_file_are_clear_errors_in_protect_and_info(phantoms, tmp_path: Path) -> None:
    import shutil

    images, masks, config = phantoms
    images2, masks2 = Path(shutil.copytree(images, tmp_path / "i")), Path(shutil.copytree(masks, tmp_path / "m"))
    (images2 / "zero.nii.gz").write_bytes(b"")
    (masks2 / "zero.nii.gz").write_bytes(b"")
    result = runner.invoke(
        app, ["protect", str(images2), "-m", str(masks2), "-o", str(tmp_path / "o"), "-c", str(config)]
    )
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "zero.nii.gz: not a NIfTI file" in result.output and "phantom_000" in result.output
    info = runner.invoke(app, ["info", str(images2), "-m", str(masks2)])
    assert info.exit_code == 1 and isinstance(info.exception, SystemExit), info.output
    assert "zero.nii.gz: not a NIfTI file" in info.output
    (tmp_path / "file").write_text("x")
    result = runner.invoke(
        app, ["protect", str(images), "-m", str(masks), "-o", str(tmp_path / "file"), "-c", str(config)]
    )
    assert result.exit_code == 1 and "file: not a folder (expected an output folder, got a file)" in result.output


def test_changed_settings_into_the_same_out_are_refused_unless_overwrite(phantoms, tmp_path: Path) -> None:
    images, masks, config = phantoms
    base = ["protect", str(images), "-m", str(masks), "-o", str(tmp_path / "o"), "-c", str(config)]
    assert runner.invoke(app, base).exit_code == 0
    refused = runner.invoke(app, base + ["--seed", "5"])
    assert refused.exit_code == 1 and "changed: protector.seed" in refused.output and "--overwrite" in refused.output
    assert runner.invoke(app, base + ["--seed", "5", "--overwrite"]).exit_code == 0
    assert json.loads((tmp_path / "o" / "manifest.json").read_text())["protector"]["seed"] == 5


def test_version_and_configs_commands() -> None:
    import umed

    version = runner.invoke(app, ["--version"])
    assert version.exit_code == 0 and version.output.strip() == f"umed {umed.__version__}"
    listed = runner.invoke(app, ["configs"])
    assert listed.exit_code == 0
    names = [line.split()[0] for line in listed.output.splitlines()]
    assert names[:1] == ["umed"] and {"brats_tumour_core", "isbi_membranes", "fast", "methods/em"} <= set(names)
    assert "(default)" in listed.output.splitlines()[0]
    shown = runner.invoke(app, ["configs", "fast"])
    assert shown.exit_code == 0 and "steps: 20" in shown.output
    unknown = runner.invoke(app, ["configs", "nope"])
    assert unknown.exit_code == 1 and "unknown name 'nope'" in unknown.output


def test_workers_auto_and_a_bad_count(phantoms, tmp_path: Path) -> None:
    """``--workers auto`` runs (one process for the shipped mark); a count below 1 is refused by name."""
    images, masks, _ = phantoms
    result = runner.invoke(app, ["protect", str(images), "-m", str(masks), "-o", str(tmp_path / "a"), "-j", "auto"])
    assert result.exit_code == 0, result.output
    bad = runner.invoke(app, ["protect", str(images), "-m", str(masks), "-o", str(tmp_path / "b"), "-j", "0"])
    assert bad.exit_code == 2 and "--workers" in bad.output and not (tmp_path / "b").exists()
