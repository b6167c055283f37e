"""``umed info``: table, JSON report, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from umed.cli import app
from umed.phantom import make_phantom_dataset

runner = CliRunner()


def test_info_prints_a_table_and_writes_json(tmp_path: Path) -> None:
    images, masks = make_phantom_dataset(tmp_path / "phantom", n_cases=2, shape=(32, 32, 8))
    report = tmp_path / "reports" / "info.json"
    result = runner.invoke(app, ["info", str(images), "--masks", str(masks), "--json", str(report)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "phantom_000" in result.output and "phantom_001" in result.output and "0 failed" in result.output
    document = json.loads(report.read_text())
    assert document["n_cases"] == 2 and document["n_failed"] == 0
    assert document["cases"][1]["dtype"] == "int16" and document["cases"][0]["labels"] == [0, 1, 2]
    assert sorted(p.name for p in report.parent.iterdir()) == ["info.json"]


def test_info_exits_1_when_a_case_fails_but_reports_the_others(tmp_path: Path) -> None:
    images, masks = make_phantom_dataset(tmp_path / "phantom", n_cases=2, shape=(32, 32, 8))
    (masks / "phantom_001.nii.gz").write_bytes(b"not a nifti file at all" * 40)
    result = runner.invoke(
        app, ["info", str(images), "-m", str(masks), "--json", str(tmp_path / "r.json")], terminal_width=200
    )
    assert result.exit_code == 1
    assert "phantom_000" in result.output and "1 failed" in result.output
    assert f"{masks / 'phantom_001.nii.gz'}: unreadable NIfTI file" in result.output.replace("\n", "")
    assert json.loads((tmp_path / "r.json").read_text())["n_failed"] == 1


def test_info_on_a_missing_folder_prints_one_error_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["info", str(tmp_path / "missing")], terminal_width=200)
    assert result.exit_code == 1
    assert "images folder not found" in result.output
    assert "Traceback" not in result.output
