"""The manifest of a protect run (``OUT/manifest.json``): typed records and their JSON.

A :class:`CaseEntry` is what one case of ``umed protect`` wrote (or passed through); a :class:`CaseOutcome` is what a
worker hands back for one case; :class:`Manifest` is the whole document, written after every case so that an
interrupted run can be resumed (:mod:`umed.protect.plan`). The JSON keys and their order are the manifest format; a
case an earlier run recorded is carried over as the JSON it was written with. :func:`captured_warnings` collects the
warnings a run (or one case on a worker) logs, for the manifest.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from umed.case import Case, CaseResult

__all__ = [
    "MANIFEST_NAME",
    "PROTECTOR_NAME",
    "CaseEntry",
    "CaseOutcome",
    "Manifest",
    "captured_warnings",
    "json_or_none",
    "umed_version",
]

MANIFEST_NAME = "manifest.json"
PROTECTOR_NAME = "protector.json"

_OPTIONAL = (
    "format",
    "seed",
    "eps",
    "eps_255",
    "eps_scale",
    "intensity_mapping",
    "changed_slices",
    "seconds",
    "warning",
)


@dataclass(frozen=True)
class CaseEntry:
    """One case in the manifest: where it came from and went, the SHA-256 of each file, and what was done.

    ``status`` is ``protected`` or ``passed_through`` (an empty mask: copied unchanged, with ``warning``); the
    budget fields (``eps`` normalised units, ``eps_255`` in /255, ``eps_scale`` the per-case multiplier) and the
    intensity mapping are set for a protected case only.

    Example:
        >>> entry = CaseEntry("passed_through", "in/a.nii.gz", "masks/a.nii.gz", "a.nii.gz", "1", "2", "3",
        ...                   warning="mask has no structure voxel: copied unchanged")
        >>> list(entry.to_json())[-2:]
        ['warning', 'metrics']
    """

    status: str
    input: str
    mask: str
    output: str
    input_sha256: str | None
    mask_sha256: str | None
    output_sha256: str
    format: str | None = None
    seed: int | None = None
    eps: float | None = None
    eps_255: float | None = None
    eps_scale: float | None = None
    intensity_mapping: dict[str, Any] | None = None
    changed_slices: int | None = None
    seconds: float | None = None
    warning: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The manifest's JSON object of this case (fields a status does not use are left out)."""
        document = {f.name: getattr(self, f.name) for f in fields(self)}
        return {key: value for key, value in document.items() if key not in _OPTIONAL or value is not None}


@dataclass(frozen=True)
class CaseOutcome:
    """What one case's job returns: its result, its manifest entry (JSON; ``None`` for a failed case) and the
    warnings logged while it ran."""

    result: CaseResult
    entry: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class Manifest:
    """The run's manifest: a header (settings, protector, resume key, versions) and the cases in case order."""

    header: dict[str, Any]
    before: list[str]  # the run's warnings before any case (each case's own follow, in case order)
    cases: dict[str, Any] = field(default_factory=dict)
    failed: dict[str, str | None] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def fill(self, cases: Sequence[Case], outcomes: dict[str, CaseOutcome]) -> None:
        """Set the cases, failures and warnings from the outcomes so far, in case order (whatever order they came)."""
        done = [outcomes[case.case_id] for case in cases if case.case_id in outcomes]
        self.cases = {o.result.case_id: o.entry for o in done if o.entry is not None}
        self.failed = {o.result.case_id: o.result.error for o in done if o.result.status == "failed"}
        self.warnings = self.before + [message for o in done for message in o.warnings]

    def to_json(self) -> dict[str, Any]:
        """The JSON document (``OUT/manifest.json``)."""
        return {**self.header, "cases": self.cases, "failed": self.failed, "warnings": self.warnings}


def umed_version() -> str:
    """umed's version, as the provenance records it."""
    from umed.io.provenance import package_versions

    return package_versions()["umed"]


def json_or_none(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``: ``None`` when there is no file, ``{}`` when it is unreadable or not an object
    (not this run's: refused unless --overwrite)."""
    try:
        document = json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return {}
    return document if isinstance(document, dict) or document is None else {}


class _Collector(logging.Handler):
    def __init__(self, show: bool) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []
        self.show = show  # no handler of the application's: print as logging's last resort would have

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        if self.show and logging.lastResort is not None:
            logging.lastResort.handle(record)


@contextlib.contextmanager
def captured_warnings() -> Iterator[list[str]]:
    """Collect the warnings umed logs during the block (for the manifest); they are still shown as usual."""
    root = logging.getLogger("umed")
    collector = _Collector(show=not root.hasHandlers())
    root.addHandler(collector)
    try:
        yield collector.messages
    finally:
        root.removeHandler(collector)
