"""`umed protect --restore-key` and `umed restore` through Typer's CliRunner (exit codes, output, files)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from umed.cli import app
from umed.phantom import make_phantom_dataset

runner = CliRunner()


def test_protect_with_a_key_then_restore_gives_the_files_back(tmp_path: Path) -> None:
    images, masks = make_phantom_dataset(tmp_path / "data", n_cases=2, ndim=3, shape=(32, 32, 6), seed=2)
    out, key = tmp_path / "out", tmp_path / "key"
    args = ["protect", str(images), "--masks", str(masks), "--out", str(out), "--method", "random"]
    result = runner.invoke(app, [*args, "--restore-key", str(key)])
    assert result.exit_code == 0, result.output
    assert f"restore key (keep it secret): {key}" in result.output.replace("\n", "")
    result = runner.invoke(app, ["restore", str(out), "--key", str(key), "--out", str(tmp_path / "original")])
    assert result.exit_code == 0, result.output
    assert "restored 2 case(s)" in result.output
    for path in sorted(images.iterdir()):
        assert (tmp_path / "original" / path.name).read_bytes() == path.read_bytes()
        assert (out / path.name).read_bytes() != path.read_bytes()


def test_restore_errors_are_one_line_and_write_nothing(tmp_path: Path) -> None:
    images, masks = make_phantom_dataset(tmp_path / "data", n_cases=2, ndim=3, shape=(32, 32, 6), seed=3)
    out, key = tmp_path / "out", tmp_path / "key"
    args = ["protect", str(images), "--masks", str(masks), "--out", str(out), "--method", "random"]
    assert runner.invoke(app, [*args, "--restore-key", str(key)]).exit_code == 0
    missing = sorted(out.glob("*.nii.gz"))[0]
    missing.unlink()
    result = runner.invoke(app, ["restore", str(out), "--key", str(key), "--out", str(tmp_path / "again")])
    assert result.exit_code == 1
    assert f"{missing}: missing from the release" in result.output.replace("\n", "")
    assert "Traceback" not in result.output
    assert not (tmp_path / "again").exists()
    result = runner.invoke(app, [*args, "--restore-key", str(out / "key")])
    assert result.exit_code == 1 and "must not be inside the output folder" in result.output.replace("\n", "")
