"""Provenance: SHA-256 of files and bytes, and the versions of the packages that shape umed's output.

One package list (:data:`PACKAGES`) for every manifest, protector and audit report.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

__all__ = ["PACKAGES", "package_versions", "sha256_bytes", "sha256_file"]

PACKAGES = (
    "umed",
    "torch",
    "monai",
    "numpy",
    "scipy",
    "scikit-image",
    "nibabel",
    "pydicom",
    "SimpleITK",
    "matplotlib",
    "pillow",
)
"""The packages whose versions are recorded (umed first)."""


def package_versions() -> dict[str, str]:
    """Python, the platform and the versions of :data:`PACKAGES` (``"not installed"`` for a missing one).

    Read once per process (the package metadata is parsed from disk: about 20 ms); every call gets its own copy."""
    return dict(_package_versions())


@functools.cache
def _package_versions() -> dict[str, str]:
    import importlib.metadata as metadata
    import platform

    versions = {"python": platform.python_version(), "platform": platform.platform()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def sha256_bytes(data: bytes) -> str:
    """SHA-256 of ``data`` (hex)."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, or of a folder's files (sorted by name, names included) for a DICOM series."""
    digest = hashlib.sha256()
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode())
        with open(file, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()
