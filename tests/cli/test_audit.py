"""``umed audit``: a quick run on a tiny phantom dataset, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from umed.audit import AuditConfig
from umed.cli import app
from umed.intensity import fit_mapping
from umed.io import discover_cases, load_case, save_case
from umed.phantom import make_phantom_dataset

runner = CliRunner()


def _dataset(root: Path) -> tuple[Path, Path, Path]:
    images, masks = make_phantom_dataset(root / "phantom", n_cases=3, shape=(32, 32, 6), seed=2)
    protected = root / "protected"
    protected.mkdir()
    rng = np.random.default_rng(0)
    for case in discover_cases(images, masks):
        image, meta = load_case(case.image_path)
        labels, _ = load_case(case.mask_path)
        change = (labels > 0) * rng.choice([-1.0, 1.0], image.shape) * 4 / 255 * fit_mapping(image).span
        save_case(image + change, meta, protected / case.image_path.name)
    return images, protected, masks


def test_audit_quick_prints_a_table_and_writes_the_report(tmp_path: Path) -> None:
    images, protected, masks = _dataset(tmp_path)
    out = tmp_path / "report"
    result = runner.invoke(
        app,
        [
            "audit",
            "--clean",
            str(images),
            "--protected",
            str(protected),
            "--masks",
            str(masks),
            "--test-cases",
            "phantom_002",
            "--victims",
            "unet,segresnet",
            "--labels",
            "1,2",
            "--quick",
            "--size",
            "32",
            "--epochs",
            "1",
            "--seed",
            "1",
            "--out",
            str(out),
        ],
        terminal_width=200,
    )
    assert result.exit_code == 0, result.output
    assert "threshold floor: Dice" in result.output and "best/last/nnU-Net" in result.output
    assert "nnU-Net validation: phantom_000" in result.output
    assert "test: phantom_002" in result.output and "NOT protected = at or above it under every rule" in result.output
    document = json.loads((out / "report.json").read_text())
    assert document["settings"]["victims"] == ["unet"] and document["settings"]["quick"] is True
    assert document["settings"]["structure_labels"] == [1, 2] and document["settings"]["seed"] == 1
    assert document["test_cases"] == ["phantom_002"] and len(document["runs"]) == 1
    # options not given take AuditConfig's defaults (nothing repeated in the CLI)
    assert (
        document["settings"]["crop"] == AuditConfig.crop
        and document["settings"]["empty_ratio"] == AuditConfig.empty_ratio
    )
    assert (out / "report.md").is_file() and (out / "figures" / "dice.png").is_file()


def test_audit_errors_are_one_line_and_exit_1(tmp_path: Path) -> None:
    images, protected, masks = _dataset(tmp_path)
    result = runner.invoke(
        app,
        ["audit", "--clean", str(images), "--protected", str(tmp_path / "missing"), "--masks", str(masks)],
        terminal_width=200,
    )
    assert result.exit_code == 1
    assert "error:" in result.output and "folder not found" in result.output and "Traceback" not in result.output

    result = runner.invoke(
        app,
        [
            "audit",
            "--clean",
            str(images),
            "--protected",
            str(protected),
            "--masks",
            str(masks),
            "--defenses",
            "none,cutout",
            "--out",
            str(tmp_path / "r"),
        ],
        terminal_width=200,
    )
    assert result.exit_code == 1 and "defense: unknown name 'cutout'" in result.output
    assert not (tmp_path / "r").exists()
