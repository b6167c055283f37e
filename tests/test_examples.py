"""Run every example in examples/ as a user would (a subprocess, output into ``tmp_path``) and check what it wrote."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
BIN = Path(sys.executable).parent  # the venv's bin: python and the `umed` console script
TIMEOUT = 300  # seconds; each example takes ~10-25 s on an idle 2-core machine

pytestmark = pytest.mark.slow  # each runs a subprocess: 16 to 33 s on a shared 2-core machine


def _run(command: list[str], out: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "OMP_NUM_THREADS": "1",  # 2 shared cores: one OpenMP thread is faster than two oversubscribed ones
        "MPLBACKEND": "Agg",
        "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",  # this checkout's umed
    }
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, f"{command[-2]} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    assert out.is_dir()
    return result


def _cases(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.glob("*.nii.gz"))


def test_01_protect_a_folder(tmp_path: Path) -> None:
    out = tmp_path / "ex01"
    result = _run(["bash", str(EXAMPLES / "01_protect_a_folder.sh"), str(out)], out)
    phantoms = _cases(out / "phantoms" / "images")
    assert len(phantoms) == 4 and _cases(out / "protected") == phantoms
    for name in ("protector.json", "protector.pt", "manifest.json"):
        assert (out / "protected" / name).is_file()
    assert (out / "info.json").is_file()
    assert "umed protect" in result.stdout and "4 case(s), 0 failed" in result.stdout


def test_02_monai_pipeline(tmp_path: Path) -> None:
    out = tmp_path / "ex02"
    result = _run([sys.executable, str(EXAMPLES / "02_monai_pipeline.py"), str(out)], out)
    phantoms = _cases(out / "phantoms" / "images")
    assert len(phantoms) == 4
    assert _cases(out / "cli") == _cases(out / "monai") == phantoms
    assert (out / "cli" / "protector.json").is_file()
    assert "all identical" in result.stdout and "DIFFERENT" not in result.stdout


def test_03_audit(tmp_path: Path) -> None:
    out = tmp_path / "ex03"
    result = _run([sys.executable, str(EXAMPLES / "03_audit.py"), str(out)], out)
    assert len(_cases(out / "protected")) == 6
    for name in ("report.md", "report.json"):
        assert (out / "report" / name).is_file()
    assert str(out / "report" / "report.md") in result.stdout


def test_04_verify(tmp_path: Path) -> None:
    import json

    out = tmp_path / "ex04"
    result = _run(["bash", str(EXAMPLES / "04_verify.sh"), str(out)], out)
    assert len(_cases(out / "release")) == 4 and (out / "release.umed-key.json").is_file()
    assert not any("umed-key" in p.name for p in (out / "release").iterdir())  # the key is never released
    verdict = json.loads((out / "verdict.json").read_text())
    assert verdict["test"]["n_controls"] == 99 and 0 < verdict["p_value"] <= 1
    assert "verdict:" in result.stdout and len(list((out / "probes").iterdir())) > 2
