"""A suspect's answers on the probes, read from files its own pipeline wrote: the structure probability per voxel, or
its hard answer (0/1) where it returns only masks.

For each probe ``NAME`` (as named in the probe folder) the first of these found in the predictions folder is used:

- ``NAME.npz`` with an array ``probabilities`` (nnU-Net's ``--save_probabilities``: ``(C, *shape)`` in nnU-Net's
  reversed axis order, or in the probe's own order), or ``NAME.npy`` of the same;
- ``NAME.nii.gz``, ``NAME.nii``, ``NAME.png``, ``NAME.tif(f)`` (nnU-Net's and most tools' segmentation files),
  ``NAME_seg.nii.gz`` or ``NAME/NAME_seg.nii.gz`` (MONAI's ``SaveImage`` layouts).

An image of the probe's shape is a label map (every value > 0 is structure) when it holds integers, a probability
map when it holds floats in [0, 1]; one with a trailing channel axis (MONAI saves ``(X, Y, Z, C)``) is a probability
per class, and the structure probability is ``1 - P(background)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from umed.errors import GeometryError, InputError

__all__ = ["Answer", "answer_path", "check_complete", "read_answer", "read_answers"]

_IMAGE_SUFFIXES = (".nii.gz", ".nii", ".png", ".tif", ".tiff")


@dataclass(frozen=True)
class Answer:
    """One probe's answer: ``values`` (the probe's shape, float32 in [0, 1]), and whether it is a probability map
    (``soft``) or a hard 0/1 answer."""

    values: np.ndarray
    soft: bool


def answer_path(folder: Path, name: str) -> Path | None:
    """The prediction file of probe ``name`` in ``folder`` (see the module docstring), or ``None``."""
    folder = Path(folder)
    candidates = [folder / f"{name}.npz", folder / f"{name}.npy"]
    candidates += [folder / f"{name}{suffix}" for suffix in _IMAGE_SUFFIXES]
    candidates += [folder / f"{name}_seg.nii.gz", folder / name / f"{name}_seg.nii.gz"]
    return next((path for path in candidates if path.is_file()), None)


def _as_answer(array: np.ndarray, shape: tuple[int, ...], path: Path) -> Answer:
    array = np.asarray(array)
    if array.ndim == len(shape) + 1 and array.shape[:-1] == shape:  # channels last (MONAI)
        array = np.moveaxis(array, -1, 0)
    if array.ndim == len(shape) + 1:  # channels first, the probe's order or nnU-Net's reversed order
        if array.shape[1:] != shape and array.shape[1:] == shape[::-1]:
            array = np.transpose(array, (0, *range(array.ndim - 1, 0, -1)))
        if array.shape[1:] != shape or array.shape[0] < 2:
            raise GeometryError(
                f"{path}: expected class probabilities of shape (C >= 2, {', '.join(map(str, shape))}) "
                f"(got {array.shape})"
            )
        return Answer(np.clip(1.0 - array[0].astype(np.float32), 0.0, 1.0), soft=True)
    if array.shape != shape:
        raise GeometryError(f"{path}: prediction shape {array.shape} differs from the probe's {shape}")
    if not np.isfinite(array).all():
        raise InputError(f"{path}: prediction holds NaN or Inf values")
    if np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.bool_):
        return Answer((array > 0).astype(np.float32), soft=False)
    values = array.astype(np.float32)
    if values.min() < 0 or values.max() > 1:
        raise InputError(f"{path}: float prediction outside [0, 1] (expected a probability map or integer labels)")
    hard = bool(np.isin(values, (0.0, 1.0)).all())
    return Answer(values, soft=not hard)


def read_answer(path: Path, shape: tuple[int, ...]) -> Answer:
    """Read one prediction file as an :class:`Answer` for a probe of ``shape``."""
    path = Path(path)
    try:
        if path.name.endswith(".npz"):
            with np.load(path) as data:
                if "probabilities" not in data:
                    raise InputError(f"{path}: no array 'probabilities' (expected nnU-Net's --save_probabilities file)")
                array = data["probabilities"]
        elif path.name.endswith(".npy"):
            array = np.load(path)
        else:
            from umed.io import load_case

            array = _load_image(path, load_case)
    except InputError:
        raise
    except (OSError, ValueError, EOFError) as error:
        raise InputError(f"{path}: cannot read the prediction ({error})") from error
    return _as_answer(array, tuple(shape), path)


def _load_image(path: Path, load_case) -> np.ndarray:
    """Image data of a prediction; 4D NIfTI (channels) is read with nibabel directly."""
    if path.name.endswith((".nii", ".nii.gz")):
        import nibabel as nib

        image: Any = nib.load(str(path))
        if len(image.shape) == 4:
            return np.asarray(image.dataobj)
        if np.issubdtype(image.get_data_dtype(), np.integer):
            return np.asarray(image.dataobj).astype(np.int64)
        return np.asarray(image.get_fdata(dtype=np.float32))
    array, _ = load_case(path)
    return np.asarray(array)


def _missing(folder: Path, names: Sequence[str], what: str) -> str | None:
    """The error text for the ``names`` that have no prediction in ``folder`` (their number and the first ones)."""
    missing = [name for name in names if answer_path(folder, name) is None]
    if not missing:
        return None
    return (
        f"{folder}: predictions for too few {what}: {len(missing)} of {len(names)} missing "
        f"(first: {', '.join(missing[:5])}; expected NAME.nii.gz, NAME.npz, NAME_seg.nii.gz or NAME/NAME_seg.nii.gz)"
    )


def check_complete(folder: Path, names: Sequence[str], what: str) -> None:
    """Refuse a missing predictions folder, or one that misses some ``names``, in one error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: predictions folder not found")
    message = _missing(folder, names, what)
    if message is not None:
        raise InputError(message)


def read_answers(folder: Path, probes: Sequence[tuple[str, tuple[int, ...]]]) -> dict[str, Answer]:
    """The answers for every ``(name, shape)`` probe; every missing or bad file is reported in one error.

    Raises:
        InputError: the folder is missing, predictions are missing for some probes (their number and the first
        names), or a prediction is unreadable or of the wrong shape (every such file named).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: predictions folder not found")
    answers: dict[str, Answer] = {}
    missing = _missing(folder, [name for name, _ in probes], "probes")
    problems: list[str] = [missing] if missing is not None else []
    for name, shape in probes:
        path = answer_path(folder, name)
        if path is None:
            continue
        try:
            answers[name] = read_answer(path, shape)
        except InputError as error:
            problems.append(str(error))
    if problems:
        raise InputError("; ".join(problems))
    return answers
