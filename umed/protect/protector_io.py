"""Save and load a fitted protector as a small self-describing artefact.

Two files side by side: ``NAME.json`` (method, budget, seed, settings, intensity rule, package versions and the
SHA-256 of the weights) and ``NAME.pt`` (a plain ``dict[str, Tensor]`` saved with ``torch.save``, read back with
``torch.load(weights_only=True)``: nothing is ever unpickled). Model-free methods have no ``.pt``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from umed.errors import ConfigError, InputError
from umed.io.atomic import write_bytes_atomic, write_json_atomic
from umed.io.provenance import package_versions, sha256_bytes, sha256_file
from umed.protectors.base import Budget, Protector

__all__ = [
    "save_protector",
    "load_protector",
    "export_protector",
    "package_versions",
    "sha256_file",
    "write_json_atomic",
]

FORMAT_VERSION = 1


def save_protector(
    protector: Protector, path: Path, *, extra: dict[str, Any] | None = None, mode: int | None = None
) -> Path:
    """Write ``path`` (``.json``) and, when the protector has weights, ``path.with_suffix('.pt')``.

    Args:
        protector: a fitted protector.
        path: the JSON file to write (its ``.pt`` twin goes beside it).
        extra: more JSON-able facts to record (intensity rule, structure labels, training log).
        mode: file mode of both files (default: see :mod:`umed.io.atomic`).

    Returns:
        The JSON path.
    """
    import torch

    path = Path(path).with_suffix(".json")
    state = protector.state_dict()
    weights_sha = None
    if state:
        # torch.save names the zip's records after the file it writes: saving to memory keeps the temporary name
        # out of the archive, so the same protector always gives the same bytes
        buffer = io.BytesIO()
        torch.save({key: value for key, value in state.items()}, buffer)
        data = buffer.getvalue()
        write_bytes_atomic(data, path.with_suffix(".pt"), mode=mode)
        weights_sha = sha256_bytes(data)
    document = {
        "format": "umed-protector",
        "format_version": FORMAT_VERSION,
        **protector.config(),
        "weights": path.with_suffix(".pt").name if state else None,
        "weights_sha256": weights_sha,
        "versions": package_versions(),
        **(extra or {}),
    }
    write_json_atomic(document, path, mode=mode)
    return path


def load_protector(path: Path) -> tuple[Protector, dict[str, Any]]:
    """Rebuild a protector from :func:`save_protector` output.

    Returns:
        The protector, ready to ``perturb``, and the JSON document.

    Raises:
        InputError: missing or unreadable files, a weights file whose SHA-256 does not match or is not recorded.
        ConfigError: an unknown method or format.
    """
    import torch

    from umed.protectors import make_protector

    path = Path(path)
    if path.is_dir():
        path = path / "protector.json"
    path = path.with_suffix(".json")
    try:
        document = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(f"{path}: cannot read the protector ({error})") from error
    if document.get("format") != "umed-protector":
        raise ConfigError(
            f"{path}: not a umed protector (expected format 'umed-protector', got {document.get('format')!r})"
        )
    budget = Budget(**document["budget"])
    protector = make_protector(document["method"], budget, seed=int(document["seed"]), **document.get("settings", {}))
    if document.get("weights"):
        weights = path.parent / document["weights"]
        if not weights.is_file():
            raise InputError(f"{weights}: the protector's weights are missing")
        if not document.get("weights_sha256"):
            raise InputError(
                f"{path}: no weights_sha256 (expected the SHA-256 of {document['weights']}, got none): "
                "the weights cannot be checked"
            )
        if sha256_file(weights) != document["weights_sha256"]:
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


_CORE_KEYS = {
    "format",
    "format_version",
    "method",
    "budget",
    "seed",
    "settings",
    "weights",
    "weights_sha256",
    "versions",
}
