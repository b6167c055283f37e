"""The protector registry: names, lazy classes, and model-free methods that import no torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from umed.errors import ConfigError
from umed.protectors import PROTECTORS, Budget, make_protector

ROOT = Path(__file__).resolve().parents[2]


def test_model_free_methods_import_no_torch():
    code = (
        "import sys, umed.protectors, umed.protectors.lsp, umed.protectors.ar, umed.protectors.random; "
        "from umed.protectors import make_protector, Budget; make_protector('lsp', Budget()); "
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))[:5]"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", PROTECTORS.names())
def test_every_entry_loads_the_class_of_its_name(name):
    cls = PROTECTORS.get(name).load()
    assert cls.name == name


def test_unknown_method_lists_the_names():
    with pytest.raises(ConfigError, match="unknown name 'nope'.*umed, em, tap, sep, salm, lsp, ar, random"):
        make_protector("nope", Budget())


def test_package_exports_the_classes():
    from umed.protectors import LSPProtector, UMedProtector

    assert LSPProtector.name == "lsp" and UMedProtector.name == "umed"
