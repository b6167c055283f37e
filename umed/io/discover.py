"""Find the cases of a dataset: pair each image with its label map, and say where each case's output goes.

Layouts understood by :func:`discover_cases`:

- an images folder plus a masks folder, paired by case name (extension and nnU-Net ``_0000`` channel suffix ignored);
- an nnU-Net raw dataset folder (``imagesTr/CASE_0000.nii.gz``, ``labelsTr/CASE.nii.gz``, ``dataset.json``);
- a Medical Segmentation Decathlon task folder (``imagesTr``, ``labelsTr``, ``dataset.json`` with a ``training`` list).
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from umed.case import Case, CaseMeta
from umed.errors import ConfigError, InputError
from umed.io.dicom import is_dicom_dir
from umed.io.natural import is_natural_path, natural_case_id
from umed.io.nifti import is_nifti_path, nifti_case_id

__all__ = ["SUPPORTED", "case_name", "check_output_location", "discover_cases", "output_path_for"]

logger = logging.getLogger(__name__)

_CHANNEL_SUFFIX = re.compile(r"^(?P<base>.+)_(?P<channel>\d{4})$")
SUPPORTED = ".nii.gz, .nii, .png, .tif, .tiff files or DICOM series folders"
"""The image formats umed reads, as error messages name them."""


def case_name(path: Path) -> str | None:
    """The case name of an image path (extension removed), or ``None`` when the path is not a supported image.

    Args:
        path: a NIfTI, PNG or TIFF file, or a DICOM series folder.
    """
    path = Path(path)
    if path.name.startswith("."):
        return None
    if path.is_dir():
        return path.name if is_dicom_dir(path) else None
    if is_nifti_path(path):
        return nifti_case_id(path)
    if is_natural_path(path):
        return natural_case_id(path)
    return None


def output_path_for(case: Case, meta: CaseMeta, out_dir: Path) -> Path:
    """Where a case's output goes: the input's file (or DICOM folder) name, in ``out_dir``."""
    del meta  # the name alone decides; kept in the signature so the format could rename in the future
    return Path(out_dir) / Path(case.image_path).name


def check_output_location(out_dir: Path, input_dirs: Sequence[Path]) -> None:
    """Refuse an output folder that is an input folder or lies inside one (it would mix outputs with inputs).

    Args:
        out_dir: the output folder (need not exist).
        input_dirs: the image and mask folders.

    Raises:
        ConfigError: ``out_dir`` equals or is inside one of ``input_dirs``.
    """
    out = Path(out_dir).expanduser().resolve()
    for folder in input_dirs:
        if folder is None:
            continue
        source = Path(folder).expanduser().resolve()
        if out == source or source in out.parents:
            raise ConfigError(
                f"{out_dir}: the output folder is inside the input folder {folder} (expected a folder "
                "outside every input, got one inside)"
            )


# -------------------------------------------------------------------------------------------------------- discovery


@dataclass(frozen=True)
class _Entry:
    path: Path
    name: str  # file name without extension
    key: str  # name without the nnU-Net channel suffix


def _entries(folder: Path) -> list[_Entry]:
    entries = []
    for path in sorted(folder.iterdir()):
        name = case_name(path)
        if name is None:
            continue
        name = unicodedata.normalize("NFC", name)  # macOS writes names in NFD: "é" must pair with "é"
        match = _CHANNEL_SUFFIX.match(name)
        entries.append(_Entry(path, name, match.group("base") if match else name))
    return entries


def _require_folder(folder: Path, what: str) -> Path:
    folder = Path(folder)
    if not folder.exists():
        raise InputError(f"{folder}: {what} folder not found (expected an existing folder, got nothing)")
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder (expected a {what} folder, got a file)")
    return folder


def _pair(images: list[_Entry], masks: list[_Entry] | None, folder: Path) -> list[Case]:
    by_name: dict[str, Path] = {}
    by_key: dict[str, list[Path]] = {}
    for entry in masks or []:
        if entry.name in by_name:
            raise InputError(
                f"{entry.path}: two masks for case {entry.name} (expected one, got {by_name[entry.name].name} "
                f"and {entry.path.name})"
            )
        by_name[entry.name] = entry.path
        by_key.setdefault(entry.key, []).append(entry.path)
    channels: dict[str, int] = {}
    for entry in images:
        channels[entry.key] = channels.get(entry.key, 0) + 1
    cases: dict[str, Case] = {}
    for entry in images:
        single = channels[entry.key] == 1
        if entry.name in by_name:
            case_id, mask = entry.name, by_name[entry.name]
        elif entry.key in by_name:  # nnU-Net: CASE_0000 image, CASE mask
            case_id, mask = (entry.key if single else entry.name), by_name[entry.key]
        elif len(by_key.get(entry.key, [])) == 1:  # both carry a channel suffix
            case_id, mask = (entry.key if single else entry.name), by_key[entry.key][0]
        else:
            case_id, mask = (entry.key if single and entry.name.endswith("_0000") else entry.name), None
        if case_id in cases:
            raise InputError(
                f"{entry.path}: two images for case {case_id} (expected one, got "
                f"{cases[case_id].image_path.name} and {entry.path.name})"
            )
        cases[case_id] = Case(case_id, entry.path, mask)
    if not cases:
        raise InputError(f"{folder}: no images (expected {SUPPORTED}, got none)")
    used = {case.mask_path for case in cases.values()}
    for entry in masks or []:
        if entry.path not in used:
            logger.warning("%s: mask without an image (no image named %s); ignored", entry.path, entry.name)
    return [cases[key] for key in sorted(cases)]


def _decathlon(root: Path, document: dict) -> list[Case]:
    cases: dict[str, Case] = {}
    for item in document.get("training", []):
        if not isinstance(item, dict) or "image" not in item:
            raise InputError(
                f"{root / 'dataset.json'}: invalid training entry (expected {{'image': ..., 'label': ...}}, "
                f"got {type(item).__name__})"
            )
        image = (root / item["image"]).resolve()
        label = (root / item["label"]).resolve() if item.get("label") else None
        name = case_name(image) or image.name
        cases[name] = Case(name, image, label if label is not None and label.exists() else None)
    if not cases:
        raise InputError(f"{root / 'dataset.json'}: no training cases (expected a non-empty 'training' list, got none)")
    return [cases[key] for key in sorted(cases)]


def discover_cases(images: Path, masks: Path | None = None) -> list[Case]:
    """Find the cases of a dataset and pair each image with its label map.

    Args:
        images: a folder of images (NIfTI, PNG/TIFF files, DICOM series sub-folders), a single DICOM series folder,
            or an nnU-Net / Decathlon dataset folder (``imagesTr``, ``labelsTr``, ``dataset.json``) when ``masks``
            is ``None``.
        masks: a folder of label maps paired with the images by case name (extension and ``_0000`` channel suffix
            ignored); ``None`` for the dataset layouts or for images without masks.

    Returns:
        One :class:`Case` per image, sorted by ``case_id``; ``mask_path`` is ``None`` when no mask matches (reported
        by :func:`umed.io.validate_case`). When a case has several channel files (``_0000``, ``_0001``) each is its
        own case, named with its channel suffix, and all share the mask.

    Raises:
        InputError: a folder that does not exist or holds no image, two images or masks with the same case name,
            an invalid ``dataset.json``.
    """
    images = _require_folder(Path(images), "images")
    if masks is not None:
        masks = _require_folder(Path(masks), "masks")
        return _pair(_entries(images), _entries(masks), images)
    if (images / "imagesTr").is_dir():
        document: dict = {}
        json_path = images / "dataset.json"
        if json_path.is_file():
            try:
                document = json.loads(json_path.read_text())
            except (OSError, ValueError) as error:
                raise InputError(f"{json_path}: unreadable dataset.json ({error})") from error
            if not isinstance(document, dict):
                raise InputError(
                    f"{json_path}: invalid dataset.json (expected an object, got {type(document).__name__})"
                )
        if isinstance(document.get("training"), list) and document["training"]:
            return _decathlon(images, document)
        labels = images / "labelsTr"
        return _pair(_entries(images / "imagesTr"), _entries(labels) if labels.is_dir() else None, images / "imagesTr")
    entries = _entries(images)
    if not entries and is_dicom_dir(images):  # the folder is itself one series
        return [Case(images.name, images, None)]
    return _pair(entries, None, images)
