"""Run a suspect model on the probes locally: a TorchScript file or MONAI bundle (``--model``), or the suspect's own
predict command (``--predict 'COMMAND {in} {out}'``, e.g. a released nnU-Net model with ``nnUNetv2_predict``).

``--model`` feeds each probe as umed's audit feeds its victims: the probe's intensities mapped by its robust
0.5/99.5 percentiles to [0, 1]; a 2D network (``spatial_dims`` 2) sees the slices along the last axis that hold
slots, a 3D network the whole volume by sliding windows of ``window``. A model that expects other inputs is run
with ``--predict`` and its own pipeline.
"""

from __future__ import annotations

import shlex
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from umed.errors import InputError
from umed.verify.answers import Answer, read_answers
from umed.verify.manifest import ProbeManifest

__all__ = ["load_model", "model_answer", "model_answers", "predict_with_command", "predict_with_model", "probe_paths"]


def probe_paths(probes: Path, manifest: ProbeManifest, *, check_hashes: bool = True) -> dict[str, Path]:
    """Every probe file of the manifest in the folder ``probes``, checked against its recorded SHA-256."""
    from umed.io import case_name
    from umed.verify.probes import file_sha256

    probes = Path(probes)
    if not probes.is_dir():
        raise InputError(f"{probes}: probe folder not found")
    found = {case_name(path): path for path in probes.iterdir()}
    paths, problems = {}, []
    for entry in manifest.files:
        path = found.get(entry.name)
        if path is None:
            problems.append(f"{probes / entry.name}: probe file missing")
        elif check_hashes and file_sha256(path) != entry.sha256:
            problems.append(f"{path}: probe file changed since it was made (SHA-256 differs from the manifest)")
        else:
            paths[entry.name] = path
    if problems:
        raise InputError("; ".join(problems))
    return paths


def load_model(path: Path):
    """A TorchScript model from a file, or from a MONAI bundle folder (``models/model.ts``), on the CPU."""
    import torch

    path = Path(path)
    file = path / "models" / "model.ts" if path.is_dir() else path
    if not file.is_file():
        raise InputError(
            f"{path}: no TorchScript model (expected a .ts/.pt file or a MONAI bundle with models/model.ts)"
        )
    try:
        model = torch.jit.load(str(file), map_location="cpu")
    except (RuntimeError, ValueError) as error:
        raise InputError(f"{file}: not a TorchScript model ({str(error).splitlines()[0]})") from error
    model.eval()
    return model


def predict_with_model(
    model_path: Path,
    probes: Path,
    manifest: ProbeManifest,
    *,
    spatial_dims: int = 2,
    window: tuple[int, ...] | None = None,
    batch_size: int = 16,
) -> dict[str, Answer]:
    """The model's structure probability on every probe (see the module docstring)."""
    paths = probe_paths(probes, manifest)
    design = manifest.design
    slices = {b: sorted({p.slot.z for p in design.placements if p.base == b}) for b in range(len(manifest.bases))}
    by_name = {entry.name: slices[entry.base] for entry in manifest.files}
    return model_answers(model_path, paths, by_name, spatial_dims=spatial_dims, window=window, batch_size=batch_size)


def model_answers(
    model_path: Path,
    paths: dict[str, Path],
    slices: dict[str, list[int]] | None = None,
    *,
    spatial_dims: int = 2,
    window: tuple[int, ...] | None = None,
    batch_size: int = 16,
) -> dict[str, Answer]:
    """The model's structure probability on each file of ``paths`` (name -> image file), a 2D model only on the
    ``slices`` of each name when given (see the module docstring)."""
    from umed.io import load_case

    model = load_model(model_path)
    answers = {}
    for name, path in paths.items():
        image, _ = load_case(path)
        chosen = slices.get(name) if slices is not None else None
        answers[name] = model_answer(
            model,
            image,
            where=f"{model_path} on {path}",
            slices=chosen,
            spatial_dims=spatial_dims,
            window=window,
            batch_size=batch_size,
        )
    return answers


def model_answer(
    model: Any,
    image: np.ndarray,
    *,
    where: str,
    slices: list[int] | None = None,
    spatial_dims: int = 2,
    window: tuple[int, ...] | None = None,
    batch_size: int = 16,
) -> Answer:
    """A loaded model's structure probability on one image in file units (mapped as the module docstring says);
    ``where`` names the model and file in an error."""
    from umed.intensity import fit_mapping
    from umed.verify.inference import structure_probability

    unit = fit_mapping(image, mode="percentile").to_unit(image)
    chosen = slices if spatial_dims == 2 and unit.ndim == 3 else None
    try:
        values = structure_probability(
            model, unit, slices=chosen, batch_size=batch_size, window=window if spatial_dims == 3 else None
        )
    except RuntimeError as error:
        raise InputError(
            f"{where}: the model failed ({str(error).splitlines()[0]}); "
            "check --spatial-dims, or run it with --predict and its own pipeline"
        ) from error
    return Answer(np.asarray(values, np.float32), soft=True)


def predict_with_command(command: str, probes: Path, manifest: ProbeManifest) -> dict[str, Answer]:
    """Run ``command`` with ``{in}`` = the probe folder and ``{out}`` = a fresh folder, then read its predictions."""
    if "{in}" not in command or "{out}" not in command:
        raise InputError(f"--predict: the command must contain {{in}} and {{out}} (got {command!r})")
    probe_paths(probes, manifest)
    with tempfile.TemporaryDirectory(prefix="umed-verify-") as out:
        line = command.replace("{in}", shlex.quote(str(Path(probes).resolve()))).replace("{out}", shlex.quote(out))
        done = subprocess.run(line, shell=True, capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise InputError(f"--predict: the command exited with {done.returncode}: {' | '.join(tail)}")
        return read_answers(Path(out), [(f.name, f.shape) for f in manifest.files])
