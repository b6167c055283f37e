"""MONAI transforms that apply a fitted umed protector inside a pipeline.

``UMedProtect`` (array) and its dictionary twin ``UMedProtectd`` follow MONAI's conventions: channel-first input
``(1, *spatial)`` as numpy or (Meta)Tensor, output of the same type with metadata and affine kept. They call the same
:func:`umed.protect.protect_array` as ``umed protect``, so for the same case, protector and seed the voxel data are the
same (exactly, when the pipeline loads the file's values unscaled and unchanged: see ``disk_dtype``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data.meta_obj import get_track_meta
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends
from monai.utils.type_conversion import convert_to_dst_type, convert_to_tensor

from umed.case import CaseMeta
from umed.errors import ConfigError
from umed.perturbators.base import Protector

__all__ = ["UMedProtect", "UMedProtectd"]

_SUFFIXES = re.compile(r"(\.nii\.gz|\.nii|\.png|\.tiff?|\.dcm)$", re.IGNORECASE)


def _case_id_from(img: object, fallback: str) -> str:
    """The case id the CLI would use: the file name without extension and nnU-Net ``_0000`` channel suffix."""
    meta = getattr(img, "meta", None) or {}
    source = meta.get("filename_or_obj") if isinstance(meta, Mapping) else None
    if not source:
        return fallback
    name = _SUFFIXES.sub("", Path(str(source)).name)
    return re.sub(r"_\d{4}$", "", name)


class UMedProtect(Transform):
    """Protect one channel-first image with a fitted protector.

    Args:
        protector: a fitted :class:`~umed.perturbators.base.Protector`, or the path of a saved one
            (``protector.json`` from ``umed protect`` or ``umed export-protector``).
        structure_labels: the labels forming the structure (``None``: every label > 0).
        target_psnr: per-case budget rule of :func:`umed.protect.case_eps_scale` (dB), or ``None``.
        eps_cap: cap of the per-case budget, normalised units.
        intensity_mode: ``"percentile"`` or ``"window"`` (with ``window``), as in ``umed protect``.
        window: ``(low, high)`` in file units for the window mode.
        disk_dtype: dtype the result will be saved in; the change is truncated to what it can store, as the CLI
            does (``None``: the input array's dtype, e.g. float32 after ``LoadImage``).

    Shape:
        img: ``(1, *spatial)``, spatial 2D ``(H, W)`` or 3D ``(X, Y, Z)`` (slices along the last axis).
        label: ``(1, *spatial)`` integer labels.
        output: like ``img``, same type, dtype and metadata.

    Example:
        >>> protect = UMedProtect("protected/protector.json", structure_labels=(1, 3, 4))
        >>> out = protect(image, label)  # doctest: +SKIP
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        protector: Protector | str | Path,
        *,
        structure_labels: Sequence[int] | None = None,
        target_psnr: float | None = None,
        eps_cap: float = 16 / 255,
        intensity_mode: str = "percentile",
        window: tuple[float, float] | None = None,
        disk_dtype: np.dtype | str | None = None,
    ) -> None:
        if isinstance(protector, (str, Path)):
            from umed.protector_io import load_protector

            protector, document = load_protector(Path(protector))
            structure_labels = structure_labels if structure_labels is not None else document.get("structure_labels")
            target_psnr = target_psnr if target_psnr is not None else document.get("target_psnr")
            eps_cap = document.get("eps_cap", eps_cap)
            intensity_mode = document.get("intensity_mode", intensity_mode)
            window = window or (tuple(document["window"]) if document.get("window") else None)
        if intensity_mode not in ("percentile", "window"):
            raise ConfigError(f"intensity_mode: expected 'percentile' or 'window' (got {intensity_mode!r})")
        self.protector = protector
        self.structure_labels = tuple(structure_labels) if structure_labels else None
        self.target_psnr = target_psnr
        self.eps_cap = eps_cap
        self.intensity_mode = intensity_mode
        self.window = window
        self.disk_dtype = np.dtype(disk_dtype) if disk_dtype is not None else None

    def __call__(self, img: torch.Tensor | np.ndarray, label: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        from umed.intensity import fit_mapping
        from umed.protect import protect_array

        image_t = convert_to_tensor(img, track_meta=get_track_meta())
        label_t = convert_to_tensor(label, track_meta=False)
        if image_t.ndim not in (3, 4) or image_t.shape[0] != 1:
            raise ConfigError(f"UMedProtect: expected a channel-first image (1, *spatial) (got shape {tuple(image_t.shape)})")
        if tuple(label_t.shape[-(image_t.ndim - 1) :]) != tuple(image_t.shape[1:]):
            raise ConfigError(
                f"UMedProtect: label shape {tuple(label_t.shape)} does not match image shape {tuple(image_t.shape)}"
            )
        image = image_t[0].detach().cpu().numpy()
        labels = np.rint(label_t.reshape(image.shape).detach().cpu().numpy()).astype(np.int32)
        case_id = _case_id_from(img, fallback="case")
        disk_dtype = self.disk_dtype or image.dtype
        meta = CaseMeta(
            case_id=case_id,
            source=Path(case_id),
            format="nifti",
            shape=image.shape,
            affine=np.eye(4),
            spacing=(1.0,) * image.ndim,
            disk_dtype=np.dtype(disk_dtype),
        )
        if self.intensity_mode == "window":
            mapping = fit_mapping(image, mode="window", window=self.window)
        else:
            mapping = fit_mapping(image, mode="percentile")
        result = protect_array(
            image,
            labels,
            meta,
            self.protector,
            mapping=mapping,
            structure_labels=self.structure_labels,
            target_psnr=self.target_psnr,
            eps_cap=self.eps_cap,
        )
        out = result.array[None]
        protected, *_ = convert_to_dst_type(out, dst=image_t)
        if isinstance(img, np.ndarray):
            return protected.detach().cpu().numpy().astype(img.dtype, copy=False) if isinstance(protected, torch.Tensor) else protected
        return protected


class UMedProtectd(MapTransform):
    """Dictionary twin of :class:`UMedProtect`: protects ``keys`` using the label map at ``label_key``.

    Args:
        keys: keys of the images to protect.
        protector: as in :class:`UMedProtect`.
        label_key: key of the label map.
        allow_missing_keys: do not raise when a key is absent.
        **kwargs: the other arguments of :class:`UMedProtect`.
    """

    backend = UMedProtect.backend

    def __init__(
        self,
        keys: KeysCollection,
        protector: Protector | str | Path,
        label_key: str = "label",
        allow_missing_keys: bool = False,
        **kwargs: object,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.label_key = label_key
        self.protect = UMedProtect(protector, **kwargs)  # type: ignore[arg-type]

    def __call__(self, data: Mapping[Hashable, torch.Tensor | np.ndarray]) -> dict[Hashable, torch.Tensor | np.ndarray]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.protect(d[key], d[self.label_key])
        return d
