"""The restore key of a protect run, and ``umed restore``: the original files back from the release, bit for bit.

``umed protect ... --restore-key FILE`` writes, after the run, one small secret file outside OUT: per case and per
file, a :class:`umed.protect.patch.FilePatch` from the protected file to the original (the original bytes of the
changed voxels, which lie in the structure and its band, plus what rebuilds the original file exactly: a
``.nii.gz``'s gzip header and zlib settings), with both files' SHA-256. Nothing is added to OUT, so without the key
the release reveals nothing new. :func:`restore_dataset` checks that the key belongs to the release and that every
file is as protected, rebuilds every original and checks its SHA-256, then moves the complete folder into place.

The key is a zip archive (LZMA): ``key.json`` (format, release id, cases, files, patch descriptions) and one
``patches/N.bin`` per file.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from umed.errors import ConfigError, InputError, OutputError
from umed.protect.patch import FilePatch, apply_patch, make_patch

__all__ = [
    "KEY_FORMAT",
    "KeyCase",
    "KeyFile",
    "RestoreKey",
    "RestoreSummary",
    "check_key_location",
    "read_restore_key",
    "restore_dataset",
    "write_restore_key",
]

KEY_FORMAT = "umed-restore-key/1"


@dataclass(frozen=True)
class KeyFile:
    """One original file: its path in the restored case (``""``: the case is this file), its protected
    counterpart's path in the case's output (``None``: none), its patch's description
    (:meth:`umed.protect.patch.FilePatch.to_json`) and the key entry holding the patch's bytes."""

    original: str
    protected: str | None
    patch: dict[str, Any]
    blob: str


@dataclass(frozen=True)
class KeyCase:
    """One case of the release: its output's name in OUT (a file, or a DICOM series folder), that output's SHA-256
    as the manifest records it (:func:`umed.io.provenance.sha256_file`), and its files."""

    case_id: str
    output: str
    output_sha256: str
    files: list[KeyFile]


@dataclass(frozen=True)
class RestoreKey:
    """A release's restore key (the patches' bytes stay in the file at ``path`` until a case is restored): the
    cases, and ``release``, a SHA-256 over their outputs' names and hashes."""

    path: Path
    release: str
    cases: list[KeyCase]


@dataclass(frozen=True)
class RestoreSummary:
    """What :func:`restore_dataset` wrote: the folder and the restored case ids."""

    out: Path
    case_ids: list[str]


def _release_id(cases: Sequence[KeyCase]) -> str:
    listing = sorted([case.output, case.output_sha256] for case in cases)
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()


def check_key_location(key: Path, out: Path, inputs: Sequence[Path | None]) -> None:
    """Refuse a restore key inside OUT (it would be published with the release) or inside an input folder.

    Raises:
        ConfigError: the key's path lies in ``out`` or in one of ``inputs``.
    """
    where = Path(key).expanduser().resolve()
    for folder, what in [(out, "the output folder (it would be released with it)")] + [
        (path, "an input folder (inputs are never written to)") for path in inputs if path is not None
    ]:
        if Path(folder).expanduser().resolve() in where.parents:
            raise ConfigError(f"{key}: the restore key must not be inside {what} {folder} (expected a path outside)")


def write_restore_key(pairs: Sequence[tuple[str, Path, Path]], path: Path) -> Path:
    """Write the restore key of a release from ``(case_id, original, output)`` per case (a file each, or a DICOM
    series folder each, whose files are paired by their path in the folder), atomically and readable by its owner
    only (``0600``); one case's files are in memory at a time. Returns ``path``.

    Raises:
        OutputError: the file cannot be written.
    """
    from umed.io.atomic import atomic_file
    from umed.io.provenance import sha256_file

    cases = []
    with atomic_file(Path(path), mode=0o600) as temp, zipfile.ZipFile(temp, "w") as archive:
        for case_id, original, output in pairs:
            original, output = Path(original), Path(output)
            names = [""]
            if original.is_dir():
                names = sorted(str(p.relative_to(original)) for p in original.rglob("*") if p.is_file())
            files = []
            for name in names:
                counterpart = output / name if name else output
                data = counterpart.read_bytes() if counterpart.is_file() else None
                patch = make_patch((original / name if name else original).read_bytes(), data)
                blob = f"patches/{len(archive.namelist())}.bin"
                archive.writestr(_entry(blob), patch.to_blob(), compress_type=zipfile.ZIP_LZMA)
                files.append(KeyFile(name, name if data is not None else None, patch.to_json(), blob))
            cases.append(KeyCase(case_id, output.name, sha256_file(output), files))
        document = {"format": KEY_FORMAT, "release": _release_id(cases), "cases": [asdict(case) for case in cases]}
        archive.writestr(_entry("key.json"), json.dumps(document, indent=1), compress_type=zipfile.ZIP_LZMA)
    return Path(path)


def _entry(name: str) -> zipfile.ZipInfo:
    """A zip entry without the time of writing (the same run writes the same key bytes)."""
    return zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))


def read_restore_key(path: Path) -> RestoreKey:
    """Read the description of a key :func:`write_restore_key` wrote (the patches are read when restoring).

    Raises:
        InputError: the file is missing, not a zip archive, or not a umed restore key of this format.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            document = json.loads(archive.read("key.json"))
        if not isinstance(document, dict) or document.get("format") != KEY_FORMAT:
            found = document.get("format") if isinstance(document, dict) else type(document).__name__
            raise InputError(f"{path}: not a umed restore key (expected format {KEY_FORMAT}, got {found})")
        cases = [
            KeyCase(
                str(case["case_id"]),
                str(case["output"]),
                str(case["output_sha256"]),
                [KeyFile(f["original"], f["protected"], dict(f["patch"]), str(f["blob"])) for f in case["files"]],
            )
            for case in document["cases"]
        ]
        key = RestoreKey(path, str(document["release"]), cases)
    except (OSError, zipfile.BadZipFile, KeyError, TypeError, ValueError) as error:
        if isinstance(error, InputError):
            raise
        raise InputError(f"{path}: cannot read the restore key (expected a umed restore key; {error})") from error
    if _release_id(cases) != key.release:
        raise InputError(f"{path}: the restore key is damaged (its cases do not match its release id)")
    return key


def restore_dataset(protected: Path, key_path: Path, out: Path) -> RestoreSummary:
    """Rebuild the original files of a release in ``out``, bit for bit (DICOM: the series' original files).

    Nothing is written unless every case is restored: the key must belong to ``protected`` (its manifest, when
    there is one, records the outputs the key lists), every case the key lists must be there as protected, and
    every rebuilt file must have its original's SHA-256; the files are written in a temporary folder that then
    becomes ``out``.

    Raises:
        ConfigError: a key of another release; ``out`` inside ``protected``.
        InputError: the key cannot be read; a case missing from ``protected``; a protected file changed since
            protection (each names the file).
        OutputError: ``out`` exists and is not an empty folder, or cannot be written.
    """
    from umed.io import check_output_location
    from umed.io.atomic import atomic_dir

    protected, out = Path(protected), Path(out)
    key = read_restore_key(key_path)
    check_output_location(out, [protected])
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputError(f"{out}: the restore folder must not exist or be empty (expected nothing, got files)")
    _check_release(protected, key, Path(key_path))
    for case in key.cases:  # every file checked before anything is written
        _protected_files(protected, case)
    with atomic_dir(out) as temp, zipfile.ZipFile(key.path) as archive:
        for case in key.cases:
            for file, original in zip(case.files, _rebuild(protected, case, archive)):
                target = temp / case.output / file.original if file.original else temp / case.output
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(original)
    return RestoreSummary(out, [case.case_id for case in key.cases])


def _check_release(protected: Path, key: RestoreKey, key_path: Path) -> None:
    """Refuse a key whose outputs the release's manifest does not record (or, without a manifest, of which no
    output is in ``protected`` as protected)."""
    from umed.io.provenance import sha256_file
    from umed.protect.manifest import MANIFEST_NAME, json_or_none

    manifest = json_or_none(protected / MANIFEST_NAME)
    if isinstance(manifest, dict) and isinstance(manifest.get("cases"), dict):
        recorded = {
            entry.get("output"): entry.get("output_sha256")
            for entry in manifest["cases"].values()
            if isinstance(entry, dict)
        }
        foreign = [case.output for case in key.cases if recorded.get(case.output) != case.output_sha256]
    else:
        paths = [(protected / case.output, case.output_sha256) for case in key.cases]
        mine = [path for path, digest in paths if path.exists() and sha256_file(path) == digest]
        foreign = [] if mine or not key.cases else [case.output for case in key.cases]
    if foreign:
        raise ConfigError(
            f"{key_path}: not the restore key of {protected} (its outputs {foreign[:3]} are not the ones "
            f"{protected / MANIFEST_NAME} records; a key of another release?)"
        )


def _protected_files(protected: Path, case: KeyCase) -> list[bytes | None]:
    """The case's protected files, each checked against the key (``None`` for a file kept whole in the key)."""
    root = protected / case.output
    if not root.exists():
        raise InputError(f"{root}: missing from the release (the restore key lists case {case.case_id})")
    files: list[bytes | None] = []
    for file in case.files:
        path = root / file.protected if file.protected else root
        data = path.read_bytes() if file.protected is not None and path.is_file() else None
        expected = file.patch.get("protected_sha256")
        if expected is not None and (data is None or hashlib.sha256(data).hexdigest() != expected):
            problem = "missing" if data is None else "changed since protection"
            raise InputError(f"{path}: {problem} (expected the protected file with SHA-256 {expected})")
        files.append(data)
    return files


def _rebuild(protected: Path, case: KeyCase, archive: zipfile.ZipFile) -> list[bytes]:
    """The case's original files, from its protected files and the patches in the key."""
    originals = []
    for file, content in zip(case.files, _protected_files(protected, case)):
        where = protected / case.output / (file.protected or "")
        try:
            patch = FilePatch.from_parts(file.patch, archive.read(file.blob))
            originals.append(apply_patch(patch, content))
        except (KeyError, ValueError, zipfile.BadZipFile) as error:
            raise InputError(f"{where}: cannot restore ({error})") from error
    return originals
