"""Plan a protect run: the cases' hashes, the resume key, what an existing OUT folder may be reused for, and which
protector the run applies (:func:`plan_run`: loaded, reused from OUT, or fitted by :mod:`umed.protect.fit`).

One key decides both whether the protector in OUT is reused and whether a case already in OUT is skipped: every
setting that changes the written bytes (method and its resolved settings, budgets and band width, seed, eps_cap,
target PSNR, intensity mode and window, structure labels, the slice cap, the training cases' image and mask SHA-256,
the umed version; for ``--protector``, the applied protector's weights SHA-256). A case is skipped only when the key,
its image's and its mask's SHA-256 and its output's SHA-256 all match what the manifest recorded.

An OUT written with another key is refused (:func:`check_reusable`) unless the run overwrites it
(:func:`remove_previous_outputs`): one OUT never mixes the outputs of two settings.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from umed.case import Case
from umed.errors import ConfigError, OutputError, UmedError
from umed.protect.case import Hashes
from umed.protect.fit import Plan, check_some_structure, fit_protector, recorded_rules, training_cases
from umed.protect.manifest import MANIFEST_NAME, PROTECTOR_NAME, json_or_none, umed_version
from umed.protectors.base import Budget, ProgressCallback
from umed.settings import ProtectConfig

__all__ = [
    "case_hashes",
    "plan_run",
    "resume_key",
    "key_digest",
    "read_manifest",
    "check_reusable",
    "remove_previous_outputs",
    "warn_removed_cases",
]

logger = logging.getLogger(__name__)


def resume_key(
    cfg: Any,
    protector_config: dict[str, Any],
    training_data: Sequence[Sequence[Any]],
    version: str,
    protector_weights: str | None = None,
    mark_key: str | None = None,
) -> dict[str, Any]:
    """The settings that decide the bytes of a run (a JSON-able dict; see the module docstring).

    Args:
        cfg: the run's :class:`ProtectConfig` (after a loaded protector's recorded rules apply).
        protector_config: :meth:`Protector.config` (method, budget with band width, seed, resolved settings).
        training_data: ``[case_id, image_sha256, mask_sha256]`` of the cases the protector is fitted on.
        version: umed's version.
        protector_weights: for an applied saved protector, its ``weights_sha256`` (and its JSON is in
            ``protector_config``).
        mark_key: the fingerprint of the release's key (a new key never mixes with an old one), or ``None``.
    """
    return {
        "protector": protector_config,
        "protector_weights_sha256": protector_weights,
        "structure_labels": list(cfg.structure_labels) if cfg.structure_labels else None,
        "target_psnr": cfg.target_psnr,
        "eps_cap": cfg.eps_cap,
        "intensity_mode": cfg.intensity_mode,
        "window": list(cfg.window) if cfg.window else None,
        "max_train_slices": cfg.max_train_slices,
        "training_data": sorted([list(item) for item in training_data]),
        "umed": version,
        "mark_key": mark_key,
        "mark": cfg.mark,
    }


def key_digest(key: dict[str, Any]) -> str:
    """SHA-256 of the key's canonical JSON."""
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def read_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest of an earlier run, ``None`` when there is none.

    Raises:
        OutputError: the file exists but is not a readable JSON object (it is not silently replaced).
    """
    if not path.exists():
        return None
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise OutputError(
            f"{path}: unreadable manifest of an earlier run ({error}); use --overwrite to replace "
            "that run's output, or another --out"
        ) from error
    if not isinstance(document, dict):
        raise OutputError(f"{path}: not a umed manifest (expected a JSON object); use --overwrite or another --out")
    return document


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    names = []
    for name in sorted(set(old) | set(new)):
        if name == "protector" and isinstance(old.get(name), dict) and isinstance(new.get(name), dict):
            names += [
                f"protector.{part}"
                for part in sorted(set(old[name]) | set(new[name]))
                if old[name].get(part) != new[name].get(part)
            ]
        elif old.get(name) != new.get(name):
            names.append("training cases (image or mask SHA-256)" if name == "training_data" else name)
    return names


def check_reusable(
    out: Path, previous: dict[str, Any] | None, protector_doc: dict[str, Any] | None, key: dict[str, Any]
) -> bool:
    """Whether OUT holds an earlier run with this key (``True``), nothing of umed's (``False``), or raise.

    Args:
        out: the output folder.
        previous: its manifest (:func:`read_manifest`), or ``None``.
        protector_doc: its ``protector.json``, or ``None``.
        key: this run's :func:`resume_key`.

    Raises:
        ConfigError: OUT holds a run with another key; the message names the settings that differ.
    """
    digest = key_digest(key)
    for name, document in (("manifest.json", previous), ("protector.json", protector_doc)):
        if document is None:
            continue
        if document.get("resume_key_sha256") != digest:
            old = document.get("resume_key")
            changed = ", ".join(_differences(old, key)) if isinstance(old, dict) else "no resume key recorded"
            raise ConfigError(
                f"{out / name}: OUT holds the output of a run with other settings (changed: {changed}); "
                "use --overwrite to replace it, or another --out (outputs of two settings are never mixed)"
            )
    return previous is not None


def remove_previous_outputs(out: Path, previous: dict[str, Any] | None, protector_names: Sequence[str]) -> list[Path]:
    """``--overwrite``: delete what an earlier run wrote in OUT (the outputs its manifest lists, the protector and the
    manifest); nothing else in OUT is touched. Returns the removed paths."""
    import shutil

    names = set(protector_names) | {"manifest.json"}
    for entry in (previous or {}).get("cases", {}).values():
        if isinstance(entry, dict) and isinstance(entry.get("output"), str):
            names.add(entry["output"])
    removed = []
    root = out.resolve()
    for name in sorted(names):
        path = out / name
        if root not in path.resolve().parents or not (path.exists() or path.is_symlink()):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
        removed.append(path)
    return removed


def warn_removed_cases(out: Path, previous: dict[str, Any] | None, case_ids: Sequence[str]) -> None:
    """Warn about outputs of an earlier run whose case is no longer in the input (they stay in OUT)."""
    current = set(case_ids)
    for case_id, entry in sorted((previous or {}).get("cases", {}).items()):
        if case_id not in current and isinstance(entry, dict):
            logger.warning(
                "%s: output of case %s, which is no longer in the input (left in place; delete it or use --overwrite)",
                out / str(entry.get("output", case_id)),
                case_id,
            )


def case_hashes(cases: Sequence[Case]) -> dict[str, Hashes]:
    """``case_id -> (image SHA-256, mask SHA-256)``; ``None`` for a missing or unreadable file."""
    from umed.io.provenance import sha256_file

    def digest(path: Path | None) -> str | None:
        try:
            return sha256_file(path) if path is not None else None
        except OSError:
            return None

    return {case.case_id: (digest(case.image_path), digest(case.mask_path)) for case in cases}


def plan_run(
    cfg: ProtectConfig,
    cases: Sequence[Case],
    hashes: dict[str, Hashes],
    overwrite: bool,
    mode: int,
    progress: ProgressCallback | None,
    mark: tuple[Any, Path] | None = None,
) -> tuple[ProtectConfig, Plan, dict[str, Any] | None]:
    """Decide the resume key (with the mark key's fingerprint), check OUT against it, then load, reuse or fit the
    protector (nothing is fitted when the mark takes the whole budget).

    Returns ``(cfg, plan, previous manifest)``; the previous manifest is ``None`` unless its cases may be reused.
    """
    from umed.protect.protector_io import load_protector
    from umed.protectors import make_protector

    version = umed_version()
    fingerprint = mark[0].fingerprint if mark is not None else None
    if cfg.protector is not None and cfg.mark and mark is not None and mark[0].share >= 1:
        raise ConfigError(
            f"{cfg.protector}: the shipped mark takes the whole budget, so this protector would not be applied "
            "(expected --no-mark to apply a saved protector, or a key with mark_share below 1)"
        )
    if cfg.protector is not None:
        protector, document = load_protector(cfg.protector)
        cfg = recorded_rules(cfg, document)
        training = document.get("training_data") or []
        key = resume_key(cfg, protector.config(), training, version, document.get("weights_sha256"), fingerprint)
        fit_on: list[Case] = []
    else:
        budget = Budget(cfg.eps_contour, cfg.eps_texture, cfg.band_width)
        protector = make_protector(cfg.method, budget, seed=cfg.seed, **cfg.method_settings)
        fit_on = training_cases(cfg, cases)
        training = [[case.case_id, *hashes[case.case_id]] for case in fit_on]
        key = resume_key(cfg, protector.config(), training, version, mark_key=fingerprint)
    own = cfg.out / PROTECTOR_NAME
    if overwrite:
        earlier = json_or_none(cfg.out / MANIFEST_NAME) or None
        for path in remove_previous_outputs(cfg.out, earlier, [PROTECTOR_NAME, own.with_suffix(".pt").name]):
            logger.warning("%s: removed (--overwrite)", path)
    previous = read_manifest(cfg.out / MANIFEST_NAME)
    check_reusable(cfg.out, previous, json_or_none(own), key)
    warn_removed_cases(cfg.out, previous, [case.case_id for case in cases])
    fit_ids = sorted(str(item[0]) for item in training)
    if cfg.protector is not None:
        return cfg, Plan(protector, Path(cfg.protector), document, [], key, fit_ids), previous
    if cfg.mark and mark is not None and mark[0].share >= 1:  # the mark takes the whole budget: nothing to fit
        check_some_structure(cfg, fit_on)
        return cfg, Plan(protector, None, {}, [], key, fit_ids), previous
    if own.is_file():
        try:
            reused, document = load_protector(own)
            return cfg, Plan(reused, own, document, [], key, fit_ids), previous  # cases validated when applied
        except UmedError as error:
            logger.warning("%s: not reused, fitted again (%s)", own, error)
    return cfg, fit_protector(cfg, fit_on, protector, key, fit_ids, mode, progress), previous
