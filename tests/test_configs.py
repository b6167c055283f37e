"""umed.configs: the shipped settings are package data, the default is the measured BraTS setting, and the code
defaults are read from it (one set of numbers)."""

from __future__ import annotations

import dataclasses
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest

from umed import configs
from umed.errors import ConfigError
from umed.protectors import Budget, UMedProtector, make_protector
from umed.settings import ProtectConfig, load_protect_config

ROOT = Path(__file__).resolve().parents[1]


def test_names_descriptions_and_lookup() -> None:
    names = configs.names()
    assert names[0] == "umed"
    assert {"brats_tumour_core", "isbi_membranes", "fast", "methods/em", "methods/random"} <= set(names)
    assert all(configs.describe(name) for name in names)
    with pytest.raises(ConfigError, match="unknown name 'nope'.*brats_tumour_core"):
        configs.text("nope")


def test_every_yaml_in_the_package_is_package_data() -> None:
    """pyproject's package-data patterns must match every shipped YAML (else an installed umed has none)."""
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["umed"]
    package = ROOT / "umed"
    files = [path.relative_to(package).as_posix() for path in (package / "configs").rglob("*.yaml")]
    assert len(files) == len(configs.names())
    assert all(
        any(fnmatch(name, pattern) and name.count("/") == pattern.count("/") for pattern in patterns) for name in files
    )


def test_default_is_brats_tumour_core_without_its_labels() -> None:
    default = configs.load("umed")
    brats = configs.load("brats_tumour_core")
    assert brats.pop("structure_labels") == [1, 3, 4]
    assert default.pop("structure_labels") is None
    # the default also spells out the settings brats_tumour_core leaves at their default
    assert {key: value for key, value in default.items() if key in brats} == brats
    run_default = load_protect_config(None, images="i", masks="m", out="o", structure_labels=(1, 3, 4))
    run_brats = load_protect_config("brats_tumour_core", images="i", masks="m", out="o")

    def protector(cfg: ProtectConfig) -> dict:
        budget = Budget(cfg.eps_contour, cfg.eps_texture, cfg.band_width)
        return make_protector(cfg.method, budget, seed=cfg.seed, **cfg.method_settings).config()

    assert protector(run_default) == protector(run_brats)
    same = {f.name for f in dataclasses.fields(ProtectConfig)} - {"method_settings"}
    assert {k: getattr(run_default, k) for k in same} == {k: getattr(run_brats, k) for k in same}


def test_code_defaults_are_the_shipped_default() -> None:
    shipped = load_protect_config("umed", images="i", out="o")
    code = ProtectConfig(images=Path("i"), masks=None, out=Path("o"))
    assert dataclasses.replace(shipped, method_settings={}) == code
    resolved = UMedProtector(Budget(code.eps_contour, code.eps_texture, code.band_width)).settings
    assert {key: resolved[key] for key in shipped.method_settings} == shipped.method_settings


def test_config_by_path_or_name_and_missing_file(tmp_path: Path) -> None:
    own = tmp_path / "mine.yaml"
    own.write_text("seed: 4\n")
    assert load_protect_config(own, images="i", out="o").seed == 4
    assert load_protect_config("fast", images="i", out="o").method_settings["steps"] == 20
    with pytest.raises(ConfigError, match="nothere.yaml: config file not found"):
        load_protect_config(tmp_path / "nothere.yaml", images="i", out="o")
