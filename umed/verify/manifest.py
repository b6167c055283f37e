"""The secret probe manifest: which probe file is which base and copy, and the whole probe design.

It names the key's position among the marks, so it is as secret as the key. It also records the SHA-256 of every
probe file as written, and the randomness the design was drawn from, so that the probes can be shown, in a dispute,
to be the ones made before the suspect's answers were seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from umed.errors import ConfigError
from umed.verify.design import Placement, ProbeDesign
from umed.verify.family import MarkFamily
from umed.verify.secret_file import read_secret_json, write_secret_json
from umed.verify.slots import Slot

__all__ = ["MANIFEST_FORMAT", "ProbeFile", "ProbeManifest", "load_probe_manifest", "save_probe_manifest"]

MANIFEST_FORMAT = "umed-probe-manifest/1"


@dataclass(frozen=True)
class ProbeFile:
    """One probe file: its case name in the probe folder, base index, copy (``None``: the unmarked base), the
    spatial shape and the SHA-256 of the file (of its files, sorted by name, for a DICOM series)."""

    name: str
    base: int
    copy: int | None
    shape: tuple[int, ...]
    sha256: str


@dataclass(frozen=True)
class ProbeManifest:
    """Everything ``umed verify score`` needs besides the key and the answers.

    Attributes:
        key_fingerprint: :attr:`umed.verify.key.MarkKey.fingerprint` of the key the probes were made for.
        design: the probe design (marks, key position, placements).
        bases: case id of each base (the owner's clean cases, never released).
        files: every probe file.
        entropy: the random integer the design was drawn from.
        structure_labels: the labels that formed the structure (``None``: every label > 0).
    """

    key_fingerprint: str
    design: ProbeDesign
    bases: tuple[str, ...]
    files: tuple[ProbeFile, ...]
    entropy: int
    structure_labels: tuple[int, ...] | None

    def file(self, base: int, copy: int | None) -> ProbeFile:
        for entry in self.files:
            if entry.base == base and entry.copy == copy:
                return entry
        raise KeyError((base, copy))

    def to_dict(self) -> dict[str, Any]:
        design = self.design
        return {
            "format": MANIFEST_FORMAT,
            "key_fingerprint": self.key_fingerprint,
            "entropy": str(self.entropy),
            "structure_labels": list(self.structure_labels) if self.structure_labels is not None else None,
            "bases": list(self.bases),
            "files": [
                {"name": f.name, "base": f.base, "copy": f.copy, "shape": list(f.shape), "sha256": f.sha256}
                for f in self.files
            ],
            "family": design.family.to_dict(),
            "amplitude": design.amplitude,
            "seeds": [str(s) for s in design.seeds],
            "key_index": design.key_index,
            "copies": list(design.copies),
            # base, copy, z, row, col, radius, mark
            "placements": [
                [p.base, p.copy, p.slot.z, p.slot.row, p.slot.col, p.slot.radius, p.mark] for p in design.placements
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProbeManifest:
        if data.get("format") != MANIFEST_FORMAT:
            raise ConfigError(f"expected a umed probe manifest ({MANIFEST_FORMAT}) (got format {data.get('format')!r})")
        try:
            design = ProbeDesign(
                family=MarkFamily.from_dict(data["family"]),
                amplitude=float(data["amplitude"]),
                seeds=tuple(int(s) for s in data["seeds"]),
                key_index=int(data["key_index"]),
                copies=tuple(int(c) for c in data["copies"]),
                placements=tuple(
                    Placement(int(b), int(c), Slot(int(z), int(r), int(q), int(rad)), int(m))
                    for b, c, z, r, q, rad, m in data["placements"]
                ),
            )
            files = tuple(
                ProbeFile(
                    str(f["name"]),
                    int(f["base"]),
                    None if f["copy"] is None else int(f["copy"]),
                    tuple(int(s) for s in f["shape"]),
                    str(f["sha256"]),
                )
                for f in data["files"]
            )
            labels = data["structure_labels"]
            return cls(
                key_fingerprint=str(data["key_fingerprint"]),
                design=design,
                bases=tuple(str(b) for b in data["bases"]),
                files=files,
                entropy=int(data["entropy"]),
                structure_labels=None if labels is None else tuple(int(v) for v in labels),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ConfigError(f"probe manifest: a field is missing or malformed ({error!r})") from error


def save_probe_manifest(manifest: ProbeManifest, path: Path) -> Path:
    """Write the manifest atomically, readable by its owner only where the file system allows."""
    return write_secret_json(manifest.to_dict(), Path(path))


def load_probe_manifest(path: Path) -> ProbeManifest:
    """Read a probe manifest; a missing or malformed file is an :class:`~umed.errors.InputError` naming it."""
    return read_secret_json(path, "umed probe manifest", ProbeManifest.from_dict)
