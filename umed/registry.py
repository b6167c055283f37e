"""One registry style for everything umed chooses by name: protectors, victims, defenses, file formats, configs.

A :class:`Registry` is a plain ordered mapping from a lower-case name to an entry, with one look-up,
:meth:`Registry.get`, whose error lists the valid names (MONAI's ``look_up_option`` idea). CLI help, benchmarks and
docs read :meth:`Registry.names` instead of retyping the list.

Example:
    >>> colours = Registry("colour", {"red": 1, "green": 2})
    >>> colours.get(" Red ")
    1
    >>> colours.names()
    ('red', 'green')
    >>> colours.get("blue")
    Traceback (most recent call last):
    ...
    umed.errors.ConfigError: colour: unknown name 'blue' (expected one of red, green)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Generic, TypeVar

from umed.errors import ConfigError

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """Name -> entry, looked up case-insensitively; an unknown name is a :class:`~umed.errors.ConfigError`.

    Args:
        kind: what the names are ("method", "victim", "defense", ...); starts every error message.
        entries: the entries in the order lists should show them.
    """

    def __init__(self, kind: str, entries: Mapping[str, T]) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        for name, entry in entries.items():
            key = self.key(name)
            if key in self._entries:
                raise ValueError(f"{kind}: {name!r} registered twice")
            self._entries[key] = entry

    @staticmethod
    def key(name: object) -> str:
        """The canonical (stripped, lower-case) form of a name."""
        return str(name).strip().lower()

    def get(self, name: object, default: object = None) -> T:
        """The entry called ``name``; unknown names raise :class:`ConfigError` listing the valid ones."""
        key = self.key(name)
        if key not in self._entries:
            raise ConfigError(f"{self.kind}: unknown name {str(name)!r} (expected one of {', '.join(self._entries)})")
        return self._entries[key]

    def names(self) -> tuple[str, ...]:
        """Every registered name, in registration order."""
        return tuple(self._entries)

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return self.key(name) in self._entries

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self._entries)})"
