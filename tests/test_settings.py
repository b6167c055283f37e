"""umed.settings: YAML + overrides into a checked ProtectConfig."""

from __future__ import annotations

from pathlib import Path

import pytest

from umed.errors import ConfigError
from umed.settings import ProtectConfig, load_protect_config

CONFIGS = Path(__file__).resolve().parents[1] / "umed" / "configs"


def test_every_shipped_config_loads() -> None:
    # audit.yaml and verify.yaml: umed audit's and umed verify's (tests/audit/test_config.py, tests/verify)
    paths = sorted(p for p in CONFIGS.rglob("*.yaml") if p.stem not in ("audit", "verify"))
    assert len(paths) >= 10
    for path in paths:
        cfg = load_protect_config(path, images=Path("in"), out=Path("out"))
        assert 0 < cfg.eps_contour <= cfg.eps_cap or cfg.target_psnr is None


def test_fractions_paths_tuples_and_overrides() -> None:
    cfg = load_protect_config(
        CONFIGS / "brats_tumour_core.yaml", images="a", masks="b", out="c", seed=7, target_psnr=None
    )
    assert cfg.eps_contour == pytest.approx(4 / 255) and cfg.eps_texture == pytest.approx(8 / 255)
    assert cfg.structure_labels == (1, 3, 4)
    assert cfg.images == Path("a") and cfg.seed == 7
    assert cfg.target_psnr == 50.0  # None means "not given": the file's value stays
    assert cfg.to_dict()["images"] == "a"


@pytest.mark.parametrize(
    "values, message",
    [
        ({"eps_contour": 2.0}, "eps_contour"),
        ({"band_width": -1}, "band_width"),
        ({"intensity_mode": "zscore"}, "intensity_mode"),
        ({"intensity_mode": "window"}, "window"),
        ({"target_psnr": 5.0}, "target_psnr"),
    ],
)
def test_invalid_values_raise_config_error(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ProtectConfig(images=Path("i"), masks=None, out=Path("o"), **values)


def test_unknown_key_and_unreadable_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("eps: 3\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown setting\(s\) \['eps'\]"):
        load_protect_config(bad, images="i", out="o")
    with pytest.raises(ConfigError, match="missing.yaml"):
        load_protect_config(tmp_path / "missing.yaml", images="i", out="o")
    with pytest.raises(ConfigError, match="8/two"):
        load_protect_config(None, images="i", out="o", eps_contour="8/two")
