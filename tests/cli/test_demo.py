"""`umed demo` end to end in a fresh folder: the clean victim learns the phantoms' lesion (it beats the threshold
floor by a margin), and the report with its figures is written. Nothing is asserted about the protection itself: that
belongs to the benchmarks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from umed.cli import app
from umed.demo import DEMO_OVERRIDES, DEMO_TEST_CASES


@pytest.mark.slow
def test_demo_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--out", str(out)], terminal_width=200)
    assert result.exit_code == 0, result.output

    document = json.loads((out / "report" / "report.json").read_text())
    floor = document["threshold_floor"]["dice"]
    assert floor < 0.4  # the lesion is a texture, not a threshold task
    runs = {run["defense"]: run for run in document["runs"]}
    assert set(runs) == {"none", "gaussian"}
    assert runs["none"]["clean"]["best_dice"] > floor + 0.1  # the clean victim clearly beats the floor
    assert document["settings"]["size"] is None and document["settings"]["structure_labels"] == [2]  # native, lesion
    assert document["settings"]["test_cases"] == list(DEMO_TEST_CASES)
    assert document["data"]["validation_cases"] and runs["none"]["clean"]["nnunet_epoch"] is not None
    for name in ("report.md", "figures/examples.png", "figures/curves.png", "figures/dice.png"):
        assert (out / "report" / name).stat().st_size > 0

    manifest = json.loads((out / "protected" / "manifest.json").read_text())
    assert {k: manifest["settings"]["method_settings"][k] for k in DEMO_OVERRIDES} == DEMO_OVERRIDES
    assert not set(DEMO_TEST_CASES) & set(manifest["fit_cases"])  # the protector never saw the test phantoms
    assert "were used to fit the protector" not in result.output  # so the audit has no leakage warning
    for line in (
        "demo: threshold floor",
        "PSNR",
        "demo:     none: Dice clean -> protected",
        "demo: gaussian: Dice clean -> protected",
        "demo:     none: mark test, victim trained on protected data: ",
        "demo:     none: mark test, victim trained on clean data: ",
        "mark key: ",
        "report.md",
    ):
        assert line in result.output
    assert (tmp_path / "demo" / "protected.umed-key.json").is_file()  # the key, beside the release, not in it
    for run in document["runs"]:
        for kind in ("clean", "protected"):
            assert 0 < run[kind]["details"]["verify"]["p_soft"] <= 1
