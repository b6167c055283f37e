"""Audit split checks against the protect run: a test case that fitted the protector (the manifest of
``umed protect`` records ``fit_cases``), or a test image that is byte for byte a training image under another name.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["leakage_warnings"]

logger = logging.getLogger(__name__)


def leakage_warnings(protected: Path, pairs: Sequence[tuple[Any, Path]], test_ids: Sequence[str]) -> list[str]:
    """Warnings for an audit whose test cases are not held out: a test case the protector was fitted on (the
    manifest of ``umed protect`` in ``protected`` records ``fit_cases``), or a test image that is byte for byte a
    training image under another name. Each is also logged.

    Args:
        protected: the protected folder (its ``manifest.json``, when there is one, is read).
        pairs: ``(clean Case, protected path)`` per case.
        test_ids: the audit's test case ids.
    """
    from umed.io.provenance import sha256_file

    test = set(test_ids)
    messages = []
    manifest = _manifest_quietly(Path(protected) / "manifest.json")
    fitted = sorted(test & set(manifest.get("fit_cases") or []))
    if fitted:
        messages.append(
            f"{Path(protected) / 'manifest.json'}: test case(s) {fitted} were used to fit the protector "
            "(their scores are not held out; protect with fit_cases excluding them)"
        )
    by_hash: dict[str, list[str]] = {}
    for case, _ in pairs:
        with contextlib.suppress(OSError):
            by_hash.setdefault(sha256_file(case.image_path), []).append(case.case_id)
    for names in by_hash.values():
        if len(names) > 1 and test & set(names) and set(names) - test:
            messages.append(
                f"cases {sorted(names)} have the same image bytes: test case(s) "
                f"{sorted(test & set(names))} also appear among the training cases under another name"
            )
    for message in messages:
        logger.warning("%s", message)
    return messages


def _manifest_quietly(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}
