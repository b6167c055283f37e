"""The settings umed ships: YAML files in this package, read with :mod:`importlib.resources`.

``umed.yaml`` is the default of ``umed protect`` *and* the source of the code defaults (every default of
:class:`umed.settings.ProtectConfig`, and :class:`umed.protectors.UMedProtector`'s settings, are read from it), so
there is one set of numbers. Other files:
``brats_tumour_core`` (the default plus ``structure_labels: [1, 3, 4]``), ``isbi_membranes``, ``fast`` (a tiny
protector for examples and smoke tests) and one file per baseline under ``methods/`` (``methods/em``, ...),
whose ``method_settings`` are that baseline's code defaults (:func:`umed.protectors.settings.shipped_defaults`).

``--config NAME`` takes one of these names or a path to a YAML file (:func:`resolve`).

Example:
    >>> "brats_tumour_core" in names()
    True
    >>> load("umed")["method"]
    'umed'
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from umed.errors import ConfigError

__all__ = ["DEFAULT", "names", "load", "describe", "text", "resolve"]

DEFAULT = "umed"
"""The config ``umed protect`` uses without ``--config``."""


def _files() -> dict[str, Any]:
    """Shipped name (``umed``, ``methods/em``) -> its resource (a Traversable)."""
    root = resources.files(__name__)
    found: dict[str, Any] = {}
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            found[entry.name[: -len(".yaml")]] = entry
    methods = root / "methods"
    if methods.is_dir():
        for entry in sorted(methods.iterdir(), key=lambda e: e.name):
            if entry.name.endswith(".yaml"):
                found[f"methods/{entry.name[: -len('.yaml')]}"] = entry
    return found


def names() -> tuple[str, ...]:
    """Every shipped config name, the default first."""
    found = _files()
    return (DEFAULT, *[name for name in found if name != DEFAULT])


def text(name: str) -> str:
    """The YAML text of a shipped config.

    Raises:
        ConfigError: an unknown name (the message lists the shipped ones).
    """
    found = _files()
    key = str(name).strip().lower().removesuffix(".yaml")
    if key not in found:
        raise ConfigError(f"config: unknown name {name!r} (expected a YAML file or one of {', '.join(names())})")
    return found[key].read_text(encoding="utf-8")


@functools.cache
def _load_cached(name: str) -> dict[str, Any]:
    loaded = yaml.safe_load(text(name)) or {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config {name}: expected a mapping of settings (got {type(loaded).__name__})")
    return loaded


def load(name: str) -> dict[str, Any]:
    """The raw settings of a shipped config (a fresh copy: fractions such as ``4/255`` still as text)."""
    import copy

    return copy.deepcopy(_load_cached(str(name).strip().lower().removesuffix(".yaml")))


def describe(name: str) -> str:
    """One line about a shipped config: its first comment line."""
    for line in text(name).splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
    return ""


def resolve(config: str | Path) -> tuple[str, str]:
    """``(label, yaml_text)`` for ``--config``: an existing file path, else a shipped name.

    Raises:
        ConfigError: neither a readable file nor a shipped name.
    """
    path = Path(config)
    if path.is_file():
        try:
            return str(path), path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"{path}: cannot read the config ({error})") from error
    if path.suffix in (".yaml", ".yml") and (path.parent != Path(".") or path.exists()):
        raise ConfigError(f"{path}: config file not found (expected a YAML file or one of {', '.join(names())})")
    return str(config), text(str(config))
