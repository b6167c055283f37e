"""The owner's secret files (the key, the probe manifest): JSON written atomically with mode 0600, read back with an
error that names the file and the problem."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from umed.errors import ConfigError, InputError

__all__ = ["read_secret_json", "write_secret_json"]

T = TypeVar("T")


def write_secret_json(data: dict[str, Any], path: Path, *, indent: int | None = None) -> Path:
    """Write ``data`` as JSON to ``path`` atomically, readable by its owner only where the file system allows."""
    from umed.io.atomic import write_bytes_atomic

    text = json.dumps(data, indent=indent) + ("\n" if indent else "")
    return write_bytes_atomic(text.encode(), Path(path), mode=0o600)


def read_secret_json(path: Path, what: str, parse: Callable[[dict[str, Any]], T]) -> T:
    """Read ``path`` as a JSON object and ``parse`` it; a missing, unreadable or malformed file (``parse`` raising
    :class:`ConfigError`) is an :class:`InputError` naming the file and ``what`` it should be."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as error:
        raise InputError(f"{path}: {what} not found") from error
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{path}: not a {what} (expected JSON: {error})") from error
    if not isinstance(data, dict):
        raise InputError(f"{path}: not a {what} (expected a JSON object)")
    try:
        return parse(data)
    except ConfigError as error:
        raise InputError(f"{path}: {error}") from error
