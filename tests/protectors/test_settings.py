"""Method settings: types and ranges in code, every default in the method's shipped config."""

from __future__ import annotations

import pytest

from umed import configs
from umed.errors import ConfigError
from umed.protectors import PROTECTORS, Budget, make_protector
from umed.protectors.settings import Setting, check_budget, resolve_settings, shipped_config, shipped_defaults


@pytest.mark.parametrize("method", PROTECTORS.names())
def test_defaults_are_the_shipped_config(method):
    shipped = configs.load(shipped_config(method)).get("method_settings") or {}
    assert make_protector(method, Budget()).settings == shipped


def test_shipped_config_must_give_every_setting():
    specs = {"tile": Setting(int, low=4), "burn_in": Setting(int, low=2), "extra": Setting(int)}
    with pytest.raises(ConfigError, match=r"config methods/ar: method_settings .*missing \['extra'\]"):
        shipped_defaults("ar", specs)


def test_shipped_value_out_of_range_names_the_config():
    specs = {"tile": Setting(int, low=64), "burn_in": Setting(int, low=2)}
    with pytest.raises(ConfigError, match=r"config methods/ar: method 'ar': setting 'tile' \(expected >= 64, got 32\)"):
        shipped_defaults("ar", specs)


def test_method_without_shipped_config_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown name 'methods/nope'"):
        shipped_defaults("nope", {})


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"patch": True}, "expected an integer"),
        ({"patch": 2.5}, "expected an integer"),
        ({"tile": 0}, "expected >= 1"),
        ({"colour": 1}, r"unknown setting\(s\) \['colour'\]"),
    ],
)
def test_given_values_are_checked(given, message):
    specs = {"patch": Setting(int, low=1), "tile": Setting(int, low=1)}
    with pytest.raises(ConfigError, match=message):
        resolve_settings("lsp", specs, given)


@pytest.mark.parametrize("budget", [Budget(0.0, 0.1, 3), Budget(0.1, float("nan"), 3), Budget(0.1, 0.1, -1)])
def test_budget_check(budget):
    with pytest.raises(ConfigError, match="method 'lsp': budget"):
        check_budget("lsp", budget)
