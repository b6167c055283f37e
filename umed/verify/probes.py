"""``umed verify probes``: probe files from the owner's own clean cases (never released), in the cases' own format.

For each clean case (a *base*): slots of healthy tissue (:mod:`umed.verify.slots`), then the probe design
(:mod:`umed.verify.design`) with the key and fresh control marks, then one file per marked copy plus the unmarked
base, written with :func:`umed.io.save_case` (same format, header, geometry and dtype as the base). The files get
neutral names in a random order (``probe_0000`` ...), so nothing in the probe folder tells a base from a copy, or a
key slot from a control slot: that is in the secret probe manifest only.

Amplitudes are in normalised units of each base's own intensity mapping (robust 0.5/99.5 percentiles, as
``umed protect``), turned into file units with that mapping's span.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from umed.errors import ConfigError, InputError, OutputError
from umed.verify.design import design_from_settings, render_probe
from umed.verify.key import MarkKey
from umed.verify.manifest import ProbeFile, ProbeManifest, save_probe_manifest
from umed.verify.settings import VerifySettings

__all__ = ["ProbeRun", "file_sha256", "make_probes"]


@dataclass(frozen=True)
class ProbeRun:
    """What :func:`make_probes` wrote."""

    manifest: ProbeManifest
    manifest_path: Path
    out: Path
    slots: int
    probe_slices: int


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, or of a folder's files (sorted by name: a DICOM series)."""
    digest = hashlib.sha256()
    path = Path(path)
    for item in sorted(path.iterdir()) if path.is_dir() else [path]:
        if item.is_file():
            digest.update(item.name.encode() if path.is_dir() else b"")
            digest.update(item.read_bytes())
    return digest.hexdigest()


def _load_bases(images: Path, masks: Path | None, structure_labels: Sequence[int] | None):
    from umed.intensity import fit_mapping
    from umed.io import discover_cases, load_case, load_mask
    from umed.regions import foreground

    cases = discover_cases(Path(images), Path(masks) if masks is not None else None)
    if not cases:
        raise InputError(f"{images}: no cases found for the probes")
    bases = []
    for case in cases:
        if case.mask_path is None:
            raise InputError(f"{case.image_path}: no label map (expected one beside each probe case)")
        image, meta = load_case(case.image_path)
        labels, _ = load_mask(case.mask_path, image_meta=meta)
        mapping = fit_mapping(image, mode="percentile")
        bases.append((case, image, meta, mapping, foreground(np.asarray(labels), structure_labels)))
    return bases


def make_probes(
    images: Path,
    masks: Path | None,
    key: MarkKey,
    out: Path,
    manifest_path: Path,
    settings: VerifySettings,
    *,
    structure_labels: Sequence[int] | None = None,
    entropy: int | None = None,
) -> ProbeRun:
    """Write the probe folder ``out`` (atomically, as a whole) and the secret manifest.

    Args:
        images: the owner's clean cases (never released) and, with ``masks``, their label maps.
        masks: the label maps' folder (``None``: a layout that pairs them, such as nnU-Net's).
        key: the release's key (:func:`umed.verify.key.load_key`).
        out: the probe folder; must not exist yet, or be empty.
        manifest_path: the secret manifest, outside ``out``.
        settings: probe settings (:meth:`VerifySettings.shipped`, with options applied).
        structure_labels: the labels of the structure (``None``: every label > 0).
        entropy: the randomness of the design (``None``: drawn with :mod:`secrets`); recorded in the manifest.

    Raises:
        InputError: no cases, a case without a label map, no slot of healthy tissue. OutputError: ``out`` holds
        files, or the manifest would land inside ``out``.
    """
    from umed.io import atomic_dir, save_case

    out, manifest_path = Path(out), Path(manifest_path)
    if out.exists() and any(out.iterdir()):
        raise OutputError(f"{out}: probe folder is not empty (expected a new folder)")
    if out.resolve() in manifest_path.resolve().parents:
        raise OutputError(f"{manifest_path}: the probe manifest is secret: write it outside the probe folder {out}")
    entropy = secrets.randbits(63) if entropy is None else int(entropy)
    rng = np.random.default_rng([entropy, 0x70726F6265])  # "probe"
    bases = _load_bases(images, masks, structure_labels)
    try:
        design = design_from_settings(
            [mapping.to_unit(image) for _, image, _, mapping, _ in bases],
            [structure for *_, structure in bases],
            key.seed,
            key.family,
            settings,
            rng,
        )
    except ConfigError as error:
        raise InputError(f"{images}: {error}") from error
    jobs = [(b, None) for b in range(len(bases))] + [(b, c) for b in range(len(bases)) for c in range(design.copies[b])]
    order = rng.permutation(len(jobs))
    files: list[ProbeFile] = []
    with atomic_dir(out) as temp:
        for number, index in enumerate(order):
            base, copy = jobs[index]
            case, image, meta, mapping, _ = bases[base]
            name = f"probe_{number:04d}"
            array = image if copy is None else render_probe(design, image, base=base, copy=copy, scale=mapping.span)
            written = save_case(array, meta, temp / (name + _suffix(case.image_path)))
            files.append(ProbeFile(name, base, copy, tuple(int(s) for s in meta.shape), file_sha256(written)))
    manifest = ProbeManifest(
        key_fingerprint=key.fingerprint,
        design=design,
        bases=tuple(case.case_id for case, *_ in bases),
        files=tuple(sorted(files, key=lambda f: f.name)),
        entropy=entropy,
        structure_labels=tuple(structure_labels) if structure_labels is not None else None,
    )
    save_probe_manifest(manifest, manifest_path)
    used_slices = {(p.base, p.copy, p.slot.z) for p in design.placements}
    return ProbeRun(manifest, manifest_path, out, len(design.placements), len(used_slices))


def _suffix(path: Path) -> str:
    """The file extension to keep (``.nii.gz``, ``.png``...; empty for a DICOM series folder)."""
    name = Path(path).name
    if Path(path).is_dir():
        return ""
    return ".nii.gz" if name.lower().endswith(".nii.gz") else Path(path).suffix
