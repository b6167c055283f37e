"""umed.audit.config: AuditConfig's defaults are the shipped configs/audit.yaml, checked against one schema."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from umed import configs
from umed.audit import AuditConfig
from umed.audit.config import DEFAULT_SPLIT, check_defaults, shipped_defaults
from umed.errors import ConfigError


def test_every_default_comes_from_the_shipped_yaml() -> None:
    shipped = shipped_defaults()
    fields = {f.name: f.default for f in dataclasses.fields(AuditConfig) if f.default is not dataclasses.MISSING}
    fields.pop("out")  # the report folder is given per audit (None: write nothing)
    assert fields == {key: value for key, value in shipped.items() if key != "default_split"}
    assert DEFAULT_SPLIT == shipped["default_split"] == 0.33
    assert "audit" in configs.names() and "umed audit" in configs.describe("audit")


def test_a_bad_settings_file_names_the_key() -> None:
    raw = yaml.safe_load(configs.text("audit"))
    with pytest.raises(ConfigError, match=r"my\.yaml: .*unknown \['epoch'\], missing \['epochs'\]"):
        check_defaults({**{k: v for k, v in raw.items() if k != "epochs"}, "epoch": 3}, source="my.yaml")
    with pytest.raises(ConfigError, match=r"my\.yaml: quick: expected true/false \(got 1\)"):
        check_defaults({**raw, "quick": 1}, source="my.yaml")
    with pytest.raises(ConfigError, match=r"my\.yaml: victims: expected list \(got None\)"):
        check_defaults({**raw, "victims": None}, source="my.yaml")
    assert check_defaults({**raw, "size": 64, "split": 0.5}, source="my.yaml")["size"] == 64


def test_bad_values_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="victim: unknown name 'nope'"):
        AuditConfig(clean="c", protected="p", masks=None, victims="nope")
    with pytest.raises(ConfigError, match="size: expected a multiple of 16"):
        AuditConfig(clean="c", protected="p", masks=None, size=20)
    with pytest.raises(ConfigError, match="test_cases, split"):
        AuditConfig(clean="c", protected="p", masks=None, test_cases="a", split=0.5)


def test_the_3d_victim_has_its_own_batch() -> None:
    cfg = AuditConfig(clean="c", protected="p", masks=None, victims="unet,unet3d", batch_size=8, batch_size3d=3)
    assert (cfg.batch_for("unet"), cfg.batch_for("segresnet"), cfg.batch_for("unet3d")) == (8, 8, 3)
    assert AuditConfig(clean="c", protected="p", masks=None).batch_for("unet3d") == shipped_defaults()["batch_size3d"]
    with pytest.raises(ConfigError, match=r"batch_size, batch_size3d, lr: .*\(got 16, 0, 0.001\)"):
        AuditConfig(clean="c", protected="p", masks=None, batch_size3d=0)
