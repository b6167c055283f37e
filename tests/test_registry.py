import pytest

from umed.errors import ConfigError
from umed.registry import Registry


def test_lookup_is_case_insensitive_and_keeps_order():
    reg = Registry("thing", {"Alpha": 1, "beta": 2})
    assert reg.get(" ALPHA ") == 1
    assert reg["beta"] == 2
    assert reg.names() == ("alpha", "beta")
    assert "Beta" in reg and "gamma" not in reg
    assert len(reg) == 2


def test_unknown_name_lists_valid_names():
    reg = Registry("victim", {"unet": 1, "segresnet": 2})
    with pytest.raises(ConfigError, match=r"victim: unknown name 'vnet' \(expected one of unet, segresnet\)"):
        reg.get("vnet")


def test_duplicate_names_are_refused():
    with pytest.raises(ValueError, match="twice"):
        Registry("x", {"a": 1, "A": 2})
