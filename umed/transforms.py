"""MONAI transforms that apply a fitted umed protector inside a pipeline.

``UMedProtect`` (array) and its dictionary twin ``UMedProtectd`` follow MONAI's conventions
(``monai/transforms/intensity/array.py`` + ``dictionary.py``): channel-first input ``(1, *spatial)`` as numpy, a
torch Tensor or a MetaTensor, output of the same type, dtype and device, with a MetaTensor's affine and meta kept.

They call the same :func:`umed.protect.protect_array` as ``umed protect`` and derive the same case id from the
image's ``filename_or_obj`` (so per-slice seeds ``"case_id/z"`` agree). For the same case, protector and settings the
voxel values are therefore the same as the CLI's when the pipeline loads the file's values unchanged, in nibabel's
axis order (``LoadImage(reader="NibabelReader")``, no reorientation or resampling before this transform):

- float files (BraTS is float32 on disk): with the default ``disk_dtype=None``, exactly equal;
- integer files, scaled (``scl_slope``) or not: with ``disk_dtype="source"``, equal in file units, because the change
  is truncated to what the file can store, as the CLI does.

Slices are taken along the last spatial axis (axial for RAS-stored volumes), as in ``umed protect``.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data.meta_obj import get_track_meta
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends
from monai.utils.type_conversion import convert_to_dst_type, convert_to_tensor

from umed.case import CaseMeta
from umed.errors import ConfigError, InputError
from umed.protectors.base import Protector

__all__ = ["UMedProtect", "UMedProtectd"]

_CHANNEL_SUFFIX = re.compile(r"^(?P<base>.+)_\d{4}$")
_EXTENSION = re.compile(r"(\.nii\.gz|\.nii|\.png|\.tiff?|\.dcm)$", re.IGNORECASE)
_NO_SOURCE = Path("<array>")  # never exists: protect_array then skips its file-specific re-quantisation


def _source_of(obj: object) -> Path | None:
    """The file a MetaTensor was loaded from (``meta["filename_or_obj"]``), or ``None``."""
    meta = getattr(obj, "meta", None)
    source = meta.get("filename_or_obj") if isinstance(meta, Mapping) else None
    return Path(str(source)) if source else None


def _name(path: Path) -> str:
    return _EXTENSION.sub("", path.name)


def case_id_for(image_source: Path | None, label_source: Path | None, *, fallback: str = "case") -> str:
    """The case id ``umed protect`` gives an image paired with a label map (see :func:`umed.io.discover_cases`).

    The file name without extension; the nnU-Net channel suffix ``_NNNN`` is dropped when the label map's name lacks
    it (``CASE_0000`` + ``CASE``) or both carry it with different channels, and ``_0000`` is dropped when the label's
    name is unknown. A name such as ``case_0001`` paired with ``case_0001`` keeps its suffix, as in the CLI.
    Multi-channel cases (``CASE_0000`` and ``CASE_0001`` sharing a mask) are named ``CASE`` here but
    ``CASE_0000``/``CASE_0001`` by the CLI, which sees the whole folder.

    Args:
        image_source: the image file, or ``None`` when unknown.
        label_source: the label map's file, or ``None``.
        fallback: the id when the image's file is unknown.
    """
    if image_source is None:
        return fallback
    name = _name(image_source)
    match = _CHANNEL_SUFFIX.match(name)
    key = match.group("base") if match else name
    if label_source is None:
        return key if name.endswith("_0000") else name
    label_name = _name(label_source)
    label_match = _CHANNEL_SUFFIX.match(label_name)
    label_key = label_match.group("base") if label_match else label_name
    if name == label_name:
        return name
    if key == label_name or key == label_key:
        return key
    return key if name.endswith("_0000") else name


def _source_storage(source: Path | None) -> tuple[np.dtype, float, float]:
    """On-disk dtype, slope and intercept of a NIfTI file, read from its header (the voxels are not read)."""
    import nibabel as nib
    from nibabel.arrayproxy import ArrayProxy
    from nibabel.spatialimages import SpatialImage

    if source is None:
        raise ConfigError(
            "UMedProtect: disk_dtype='source' needs a MetaTensor loaded from a file "
            "(expected meta['filename_or_obj'], got none)"
        )
    try:
        image = nib.load(str(source))
        if not isinstance(image, SpatialImage):  # e.g. GIFTI: no on-disk dtype to read
            raise InputError(
                f"{source}: cannot read the on-disk dtype and scaling for disk_dtype='source' "
                f"(expected a NIfTI file, got {type(image).__name__})"
            )
        proxy = cast(ArrayProxy, image.dataobj)  # a loaded image's data object (not an array: nothing is read)
        slope, intercept = proxy.slope, proxy.inter  # nibabel maps unset/NaN scaling to 1, 0
        dtype = np.dtype(image.get_data_dtype()).newbyteorder("=")
    except (OSError, AttributeError, nib.filebasedimages.ImageFileError) as error:
        raise InputError(
            f"{source}: cannot read the on-disk dtype and scaling for disk_dtype='source' "
            f"(expected a NIfTI file, got {type(error).__name__})"
        ) from error
    return dtype, float(slope), float(intercept)


class UMedProtect(Transform):
    """Protect one channel-first image with a fitted protector (same result as ``umed protect`` on its file).

    Settings left at ``None`` come from the protector's JSON when ``protector`` is a path (the run that fitted it
    recorded them), else from :class:`umed.settings.ProtectConfig`'s defaults.

    Args:
        protector: a fitted :class:`~umed.protectors.base.Protector`, or the path of a saved one
            (``protector.json`` from ``umed protect`` or ``umed export-protector``, or its folder).
        structure_labels: the labels forming the structure (``None``: recorded ones, else every label > 0).
        target_psnr: per-case budget rule of :func:`umed.protect.case_eps_scale` (dB, data_range 1), or ``None``.
        eps_cap: cap of the per-case budget, normalised units (default 16/255).
        intensity_mode: ``"percentile"`` (default) or ``"window"`` (with ``window``), as in ``umed protect``.
        window: ``(low, high)`` in file units for the window mode.
        disk_dtype: storage the result will be saved in; the change is truncated to values it can hold, as the CLI
            does. ``None``: the input array's dtype, unscaled (float32 after ``LoadImage``, right for float files);
            a dtype: that dtype, unscaled; ``"source"``: the dtype and ``scl_slope``/``scl_inter`` of the NIfTI file
            in ``img.meta["filename_or_obj"]`` (header only), so that integer files match the CLI in file units.

    Shape:
        img: ``(1, *spatial)``, spatial 2D ``(H, W)`` or 3D ``(X, Y, Z)`` (slices along the last axis), file units,
            numpy, torch Tensor or MetaTensor, any real dtype.
        label: integer labels ``(1, *spatial)`` or ``(*spatial)``, any array type (float labels are rounded).
        output: like ``img``: same type, dtype, device and metadata; differs only on the structure and its contour
            band, by at most the case's budget ``eps`` (normalised units) times the case's intensity span.

    Raises:
        ConfigError: an image that is not ``(1, H, W)`` or ``(1, X, Y, Z)``, a label of another spatial shape,
            an invalid setting.
        InputError: an unreadable protector, or for ``disk_dtype="source"`` an unreadable source file.

    Example:
        A model-free protector here; ``UMedProtect("OUT/protector.json")`` loads the one ``umed protect`` fitted.

        >>> from umed.protectors import Budget, make_protector
        >>> protect = UMedProtect(make_protector("random", Budget(8 / 255, 8 / 255, 2), seed=0))
        >>> image = np.random.default_rng(0).uniform(100.0, 300.0, (1, 24, 20)).astype(np.float32)
        >>> label = np.zeros((1, 24, 20), np.uint8)
        >>> label[0, 6:16, 5:14] = 1
        >>> out = protect(image, label)
        >>> out.shape, out.dtype, bool((out != image).any()), bool((out[0, :4] == image[0, :4]).all())
        ((1, 24, 20), dtype('float32'), True, True)
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        protector: Protector | str | Path,
        *,
        structure_labels: Sequence[int] | None = None,
        target_psnr: float | None = None,
        eps_cap: float | None = None,
        intensity_mode: str | None = None,
        window: tuple[float, float] | None = None,
        disk_dtype: np.dtype | str | type | None = None,
    ) -> None:
        document: dict[str, Any] = {}
        if isinstance(protector, (str, Path)):
            from umed.protect.protector_io import load_protector

            protector, document = load_protector(Path(protector))
        if structure_labels is None:
            structure_labels = document.get("structure_labels")
        if target_psnr is None:
            target_psnr = document.get("target_psnr")
        if eps_cap is None:
            eps_cap = document.get("eps_cap", 16 / 255)
        if intensity_mode is None:
            intensity_mode = document.get("intensity_mode", "percentile")
        if window is None and document.get("window"):
            window = tuple(document["window"])
        if intensity_mode not in ("percentile", "window"):
            raise ConfigError(
                f"UMedProtect: intensity_mode (expected 'percentile' or 'window', got {intensity_mode!r})"
            )
        if intensity_mode == "window" and (window is None or len(window) != 2):
            raise ConfigError(
                f"UMedProtect: intensity_mode 'window' needs window=(low, high) in file units (got {window!r})"
            )
        if not 0 < float(eps_cap) <= 1:
            raise ConfigError(f"UMedProtect: eps_cap must be in (0, 1] in normalised units (got {eps_cap})")
        if isinstance(disk_dtype, str) and disk_dtype == "source":
            self.disk_dtype: np.dtype | str | None = "source"
        else:
            try:
                self.disk_dtype = np.dtype(disk_dtype) if disk_dtype is not None else None
            except TypeError as error:
                raise ConfigError(
                    f"UMedProtect: disk_dtype (expected None, a dtype or 'source', got {disk_dtype!r})"
                ) from error
        self.protector = protector
        self.structure_labels = tuple(int(v) for v in structure_labels) if structure_labels else None
        self.target_psnr = target_psnr
        self.eps_cap = float(eps_cap)
        self.intensity_mode = intensity_mode
        self.window = tuple(window) if window is not None else None

    # MONAI's Transform.__call__ takes one argument; array transforms that need a second one (MaskIntensity's mask)
    # add it the same way
    def __call__(  # type: ignore[override]
        self, img: torch.Tensor | np.ndarray, label: torch.Tensor | np.ndarray
    ) -> torch.Tensor | np.ndarray:
        from umed.intensity import fit_mapping
        from umed.protect import protect_array

        image_t = convert_to_tensor(img, track_meta=get_track_meta())
        label_t = convert_to_tensor(label, track_meta=False)
        shape = tuple(image_t.shape)
        if image_t.ndim not in (3, 4) or shape[0] != 1:
            raise ConfigError(
                f"UMedProtect: image shape (expected channel-first (1, H, W) or (1, X, Y, Z), got {shape})"
            )
        spatial = shape[1:]
        label_shape = tuple(label_t.shape)
        if label_shape not in (spatial, (1, *spatial)):
            raise ConfigError(
                f"UMedProtect: label shape (expected {(1, *spatial)} or {spatial} to match the image, "
                f"got {label_shape})"
            )
        if image_t.is_complex() or image_t.dtype == torch.bool:
            raise ConfigError(f"UMedProtect: image dtype (expected real numbers, got {image_t.dtype})")
        image = image_t[0].detach().cpu().numpy()
        labels = np.rint(label_t.reshape(spatial).detach().cpu().numpy()).astype(np.int32)

        image_source, label_source = _source_of(img), _source_of(label)
        slope, intercept = 1.0, 0.0
        if self.disk_dtype == "source":
            disk_dtype, slope, intercept = _source_storage(image_source)
            # work on the array umed.io.load_case would return: float64 when scaled, else the stored dtype
            working = np.float64 if (slope, intercept) != (1.0, 0.0) else disk_dtype
            image = image.astype(working)
        else:
            disk_dtype = np.dtype(self.disk_dtype) if self.disk_dtype is not None else image.dtype
        meta = CaseMeta(
            case_id=case_id_for(image_source, label_source),
            source=image_source if image_source is not None else _NO_SOURCE,
            format="nifti",
            shape=image.shape,
            affine=np.eye(4),
            spacing=(1.0,) * image.ndim,
            disk_dtype=np.dtype(disk_dtype),
            slope=slope,
            intercept=intercept,
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
        protected, *_ = convert_to_dst_type(result.array[None], dst=img)
        return protected


class UMedProtectd(MapTransform):
    """Dictionary twin of :class:`UMedProtect`: protects ``keys`` using the label map at ``label_key``.

    Args:
        keys: keys of the images to protect.
        protector: as in :class:`UMedProtect`.
        label_key: key of the label map (it is not changed).
        allow_missing_keys: do not raise when a key in ``keys`` is absent (the label map is always needed when an
            image is present).
        **kwargs: the other (keyword) arguments of :class:`UMedProtect`.

    Raises:
        ConfigError: an image is present but ``label_key`` is not; the shape errors of :class:`UMedProtect`.
        KeyError: a key in ``keys`` is missing and ``allow_missing_keys`` is false (MONAI's behaviour).

    Example:
        >>> from umed.protectors import Budget, make_protector
        >>> protector = make_protector("random", Budget(8 / 255, 8 / 255, 2), seed=0)
        >>> protect = UMedProtectd(keys="image", protector=protector, label_key="label")
        >>> label = np.zeros((1, 24, 20), np.uint8)
        >>> label[0, 6:16, 5:14] = 1
        >>> image = np.random.default_rng(0).uniform(100.0, 300.0, (1, 24, 20)).astype(np.float32)
        >>> sample = {"image": image, "label": label, "id": "case_a"}
        >>> out = protect(sample)
        >>> sorted(out), bool((out["image"] != sample["image"]).any()), out["label"] is sample["label"]
        (['id', 'image', 'label'], True, True)
    """

    backend = UMedProtect.backend

    def __init__(
        self,
        keys: KeysCollection,
        protector: Protector | str | Path,
        label_key: str = "label",
        allow_missing_keys: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.label_key = label_key
        self.protect = UMedProtect(protector, **kwargs)

    def __call__(self, data: Mapping[Hashable, torch.Tensor | np.ndarray]) -> dict[Hashable, torch.Tensor | np.ndarray]:
        d = dict(data)
        for key in self.key_iterator(d):
            if self.label_key not in d:
                raise ConfigError(
                    f"UMedProtectd: label map missing (expected key {self.label_key!r} beside {key!r}, "
                    f"got keys {sorted(map(str, d))})"
                )
            d[key] = self.protect(d[key], d[self.label_key])
        return d
