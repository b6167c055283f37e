"""``umed audit``: a quick run on a tiny phantom dataset, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from umed.audit import AuditConfig
from umed.cli import app

runner = CliRunner()


def test_audit_quick_prints_a_table_and_writes_the_report(tmp_path: Path, protected_phantoms) -> None:
    images, protected, masks = protected_phantoms(tmp_path, shape=(32, 32, 6), seed=2)
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


def test_audit_errors_are_one_line_and_exit_1(tmp_path: Path, protected_phantoms) -> None:
    images, protected, masks = protected_phantoms(tmp_path, shape=(32, 32, 6), seed=2)
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
