"""Save and load a fitted protector as a small self-describing artefact.

Two files side by side: ``NAME.json`` (method, budget, seed, settings, intensity rule, package versions and the
SHA-256 of the weights) and ``NAME.pt`` (a plain ``dict[str, Tensor]`` saved with ``torch.save``, read back with
``torch.load(weights_only=True)``: nothing is ever unpickled). Model-free methods have no ``.pt``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from umed.errors import ConfigError, InputError
from umed.perturbators.base import Budget, Protector

__all__ = ["save_protector", "load_protector", "export_protector", "package_versions", "sha256_file", "write_json_atomic"]

FORMAT_VERSION = 1


def package_versions() -> dict[str, str]:
    """Versions of umed and the libraries that shape its output (recorded in every manifest)."""
    import importlib.metadata as metadata

    versions = {}
    for name in ("umed", "torch", "monai", "numpy", "nibabel", "pydicom", "SimpleITK", "scikit-image"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


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


def write_json_atomic(data: Any, path: Path) -> None:
    """Write JSON through a temporary file in the same folder and ``os.replace`` it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as stream:
            json.dump(data, stream, indent=2, sort_keys=False, default=str)
            stream.write("\n")
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def save_protector(protector: Protector, path: Path, *, extra: dict[str, Any] | None = None) -> Path:
    """Write ``path`` (``.json``) and, when the protector has weights, ``path.with_suffix('.pt')``.

    Args:
        protector: a fitted protector.
        path: the JSON file to write (its ``.pt`` twin goes beside it).
        extra: more JSON-able facts to record (intensity rule, structure labels, training log).

    Returns:
        The JSON path.
    """
    import torch

    path = Path(path).with_suffix(".json")
    state = protector.state_dict()
    weights_sha = None
    if state:
        weights = path.with_suffix(".pt")
        handle, temp = tempfile.mkstemp(prefix=f".{weights.name}.", suffix=".tmp", dir=path.parent)
        os.close(handle)
        try:
            torch.save({key: value for key, value in state.items()}, temp)
            os.replace(temp, weights)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        weights_sha = sha256_file(weights)
    document = {
        "format": "umed-protector",
        "format_version": FORMAT_VERSION,
        **protector.config(),
        "weights": path.with_suffix(".pt").name if state else None,
        "weights_sha256": weights_sha,
        "versions": package_versions(),
        **(extra or {}),
    }
    write_json_atomic(document, path)
    return path


def load_protector(path: Path) -> tuple[Protector, dict[str, Any]]:
    """Rebuild a protector from :func:`save_protector` output.

    Returns:
        The protector, ready to ``perturb``, and the JSON document.

    Raises:
        InputError: missing or unreadable files, a weights file whose SHA-256 does not match.
        ConfigError: an unknown method or format.
    """
    import torch

    from umed.perturbators import make_protector

    path = Path(path)
    if path.is_dir():
        path = path / "protector.json"
    path = path.with_suffix(".json")
    try:
        document = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(f"{path}: cannot read the protector ({error})") from error
    if document.get("format") != "umed-protector":
        raise ConfigError(f"{path}: not a umed protector (expected format 'umed-protector', got {document.get('format')!r})")
    budget = Budget(**document["budget"])
    protector = make_protector(document["method"], budget, seed=int(document["seed"]), **document.get("settings", {}))
    if document.get("weights"):
        weights = path.parent / document["weights"]
        if not weights.is_file():
            raise InputError(f"{weights}: the protector's weights are missing")
        if document.get("weights_sha256") and sha256_file(weights) != document["weights_sha256"]:
            raise InputError(f"{weights}: SHA-256 does not match {path.name} (the weights were changed or truncated)")
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises several types for corrupt files
            raise InputError(f"{weights}: cannot read the weights ({error})") from error
        protector.load_state_dict(state)
    return protector, document


def export_protector(source: Path, folder: Path) -> Path:
    """Load a saved protector (checking its weights) and save it again into ``folder`` as ``protector.json/.pt``.

    The copy is rewritten from the loaded objects, so it is known to load; the JSON keeps every recorded fact
    (intensity rule, structure labels, training log, versions).

    Returns:
        The new JSON path.
    """
    protector, document = load_protector(source)
    extra = {key: value for key, value in document.items() if key not in _CORE_KEYS}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return save_protector(protector, folder / "protector.json", extra=extra)


_CORE_KEYS = {"format", "format_version", "method", "budget", "seed", "settings", "weights", "weights_sha256", "versions"}
