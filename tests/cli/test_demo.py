"""`umed demo` end to end in a fresh folder: the clean victim learns the phantoms' lesion (it beats the threshold
floor), and the report with its figures is written. Nothing is asserted about the protection itself: that belongs to
the benchmarks."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from umed.cli import app
from umed.cli.demo import DEMO_OVERRIDES, SHIPPED_CONFIG


def test_demo_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--out", str(out)], terminal_width=200)
    assert result.exit_code == 0, result.output

    document = json.loads((out / "report" / "report.json").read_text())
    floor = document["threshold_floor"]["dice"]
    assert floor < 0.6  # the lesion is a texture, not a threshold task
    runs = {run["defense"]: run for run in document["runs"]}
    assert set(runs) == {"none", "gaussian"}
    assert runs["none"]["clean"]["best_dice"] > floor  # the clean victim beats the floor (by 0.016 at seed 0)
    assert document["settings"]["size"] is None and document["settings"]["structure_labels"] == [2]  # native, lesion
    assert document["data"]["validation_cases"] and runs["none"]["clean"]["nnunet_epoch"] is not None
    for name in ("report.md", "figures/examples.png", "figures/curves.png", "figures/dice.png"):
        assert (out / "report" / name).stat().st_size > 0
    manifest = json.loads((out / "protected" / "manifest.json").read_text())
    assert {k: manifest["settings"]["method_settings"][k] for k in DEMO_OVERRIDES} == DEMO_OVERRIDES
    assert SHIPPED_CONFIG == "umed"
    for line in ("demo: threshold floor", "PSNR", "demo:     none: Dice clean -> protected",
                 "demo: gaussian: Dice clean -> protected", "report.md"):
        assert line in result.output
