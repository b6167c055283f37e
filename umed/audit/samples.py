"""What the victims see: the axial slices of the loaded cases (native, edge-padded to a multiple of 16, or resampled
to ``size x size``), the volumes of ``unet3d`` (native and cropped to the non-background box, or resampled), the
training patches, and the figure's example slices.

Example:
    >>> import numpy as np
    >>> pad_to(np.zeros((1, 20, 30), np.float32), 16).shape
    (1, 32, 32)
    >>> resample(np.arange(16, dtype=np.float32).reshape(1, 4, 4), (2, 2), labels=False)[0].tolist()
    [[2.5, 4.5], [10.5, 12.5]]
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from umed.audit.config import AuditConfig
from umed.audit.data import LoadedCase
from umed.audit.records import ExampleSlice
from umed.errors import ConfigError

__all__ = [
    "SliceSet",
    "VictimData",
    "cut_slices",
    "example_slices",
    "join",
    "pad_to",
    "patch2d",
    "sample_patches",
    "patch3d",
    "resample",
    "slice_indices",
    "victim_data_2d",
    "victim_data_3d",
    "volumes",
    "volumes_native",
]

_PATCHES_PER_VOLUME = 64  # native unet3d: random patches per training volume and epoch (every other on structure)


@dataclass
class VictimData:
    """What one kind of victim (slices or volumes) trains and is scored on, in normalised units.

    Attributes:
        clean, protected: fitting samples ``(N, *spatial)`` float32 (the training cases minus the validation cases).
        labels: their labels, integer.
        groups: ``(N,)`` case index of every sample (``mix`` replaces whole cases).
        test_x, test_y, test_spacing: clean test samples, labels and pixel sizes in mm ``(M, ndim)``.
        val_clean, val_protected, val_y: the validation cases' samples (``None`` without a validation split).
        patch: training patch (``None``: whole samples).
        patches_per_epoch: patches per epoch in patch mode.
        sliding_window: score by sliding-window inference with ``patch`` windows.
    """

    clean: np.ndarray
    protected: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    test_spacing: np.ndarray
    val_clean: np.ndarray | None
    val_protected: np.ndarray | None
    val_y: np.ndarray | None
    patch: tuple[int, ...] | None
    patches_per_epoch: int | None
    sliding_window: bool = False

    def subset(self, groups: Sequence[int]) -> VictimData:
        """The same data restricted to the cases ``groups`` (the clean half of ``mix``); the patch count per epoch is
        kept, so both victims take the same number of steps in patch mode."""
        keep = np.isin(self.groups, list(groups))
        return VictimData(
            self.clean[keep],
            self.protected[keep],
            self.labels[keep],
            self.groups[keep],
            self.test_x,
            self.test_y,
            self.test_spacing,
            self.val_clean,
            self.val_protected,
            self.val_y,
            self.patch,
            self.patches_per_epoch,
            self.sliding_window,
        )


def _case_rng(seed: int, case_id: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(case_id.encode("utf-8"))])


def slice_indices(item: LoadedCase, cfg: AuditConfig) -> list[int]:
    """Slices (last axis) the slice victims see: all with structure, plus ``empty_ratio`` as many without."""
    if item.clean.ndim == 2:
        return [0]
    has = item.labels.reshape(-1, item.labels.shape[-1]).any(axis=0)
    flat = item.clean.reshape(-1, item.clean.shape[-1])
    varied = flat.max(axis=0) > flat.min(axis=0)
    structure = np.flatnonzero(has)
    candidates = np.flatnonzero(~has & varied)
    n_empty = min(len(candidates), int(round(cfg.empty_ratio * len(structure))))
    empty: np.ndarray | list[int] = (
        _case_rng(cfg.seed, item.case_id).choice(candidates, size=n_empty, replace=False) if n_empty else []
    )
    return sorted(int(z) for z in [*structure, *empty])


def resample(stack: np.ndarray, size: Sequence[int], *, labels: bool) -> np.ndarray:
    """``(N, *spatial)`` to ``(N, *size)``: area averaging for images, nearest for labels."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(stack, dtype=np.float32))[:, None]
    if tuple(t.shape[2:]) == tuple(size):
        scaled = t
    elif labels:
        scaled = F.interpolate(t, size=tuple(size), mode="nearest-exact")
    else:
        scaled = F.interpolate(t, size=tuple(size), mode="area")
    out = scaled[:, 0].numpy()
    return np.rint(out).astype(np.int16) if labels else out.astype(np.float32)


@dataclass
class SliceSet:
    clean: np.ndarray  # (N, size, size)
    protected: np.ndarray
    labels: np.ndarray
    groups: np.ndarray  # (N,) case index
    spacing: np.ndarray  # (N, 2) mm


def pad_to(stack: np.ndarray, multiple: int) -> np.ndarray:
    """``(N, H, W)`` edge-padded at the far end of each axis up to a multiple of ``multiple`` (labels: pad with 0)."""
    pad = [(0, 0)] + [(0, (-n) % multiple) for n in stack.shape[1:]]
    if not any(p for _, p in pad):
        return stack
    if np.issubdtype(stack.dtype, np.integer):
        return np.pad(stack, pad, mode="constant")
    return np.pad(stack, pad, mode="edge")


def cut_slices(items: list[LoadedCase], cfg: AuditConfig) -> SliceSet:
    """The victims' slices of ``items``: resampled to ``cfg.size`` or, natively, padded to a multiple of 16."""
    clean, protected, labels, groups, spacing = [], [], [], [], []
    shapes = {item.clean.shape[:2] for item in items}
    if cfg.native and len(shapes) > 1:
        raise ConfigError(
            f"{cfg.clean}: slices differ in size between cases ({sorted(shapes)[:4]}); native-resolution victims need "
            "one size (pass --size to resample every slice to SIZE x SIZE)"
        )
    for k, item in enumerate(items):
        index = slice_indices(item, cfg)
        if not index:
            continue
        if item.clean.ndim == 2:
            c, p, y = item.clean[None], item.protected[None], item.labels[None]
        else:
            c, p, y = (np.moveaxis(a[..., index], -1, 0) for a in (item.clean, item.protected, item.labels))
        shape = c.shape[1:]
        if cfg.size is None:  # native resolution
            clean.append(pad_to(c.astype(np.float32), 16))
            protected.append(pad_to(p.astype(np.float32), 16))
            labels.append(pad_to(y.astype(np.int16), 16))
            pixel = [item.spacing[a] for a in range(2)]
        else:
            clean.append(resample(c, (cfg.size, cfg.size), labels=False))
            protected.append(resample(p, (cfg.size, cfg.size), labels=False))
            labels.append(resample(y, (cfg.size, cfg.size), labels=True))
            pixel = [item.spacing[a] * shape[a] / cfg.size for a in range(2)]
        groups.append(np.full(len(index), k))
        spacing.append(np.tile(pixel, (len(index), 1)))
    if not clean:
        side = cfg.size or 16
        empty = np.zeros((0, side, side), np.float32)
        return SliceSet(empty, empty, empty.astype(np.int16), np.zeros(0, int), np.zeros((0, 2)))
    return SliceSet(*(np.concatenate(a) for a in (clean, protected, labels, groups, spacing)))


def volumes(items: list[LoadedCase], side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(clean, protected, labels, spacing)``: every volume resampled to ``side^3`` for the 3D victim."""
    size = (side, side, side)
    clean = np.stack([resample(i.clean[None], size, labels=False)[0] for i in items])
    protected = np.stack([resample(i.protected[None], size, labels=False)[0] for i in items])
    labels = np.stack([resample(i.labels[None], size, labels=True)[0] for i in items])
    spacing = np.array([[i.spacing[a] * i.clean.shape[a] / side for a in range(3)] for i in items])
    return clean, protected, labels, spacing


def volumes_native(
    items: list[LoadedCase], minimum: int, multiple: int = 8
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(clean, protected, labels, spacing)`` at native resolution for the 3D victim: each volume cropped to the
    bounding box of its non-background voxels (above the clean image's minimum, and every structure voxel), then all
    padded (edge values; labels 0) to one shape, a multiple of ``multiple`` and at least ``minimum`` per axis."""
    boxes = []
    for item in items:
        inside = (item.clean > item.clean.min()) | (item.labels > 0)
        where = np.argwhere(inside) if inside.any() else np.argwhere(np.ones(inside.shape, bool))
        boxes.append(tuple(slice(int(a), int(b) + 1) for a, b in zip(where.min(axis=0), where.max(axis=0))))
    shape = [max(b[a].stop - b[a].start for b in boxes) for a in range(3)]
    shape = [max(n + (-n) % multiple, minimum) for n in shape]

    def fit(volume: np.ndarray, box: tuple[slice, ...]) -> np.ndarray:
        part = volume[box]
        pad = [(0, s - n) for s, n in zip(shape, part.shape)]
        if np.issubdtype(part.dtype, np.integer):
            return np.pad(part, pad, mode="constant")
        return np.pad(part, pad, mode="edge").astype(np.float32)

    clean = np.stack([fit(i.clean, b) for i, b in zip(items, boxes)])
    protected = np.stack([fit(i.protected, b) for i, b in zip(items, boxes)])
    labels = np.stack([fit(i.labels, b) for i, b in zip(items, boxes)])
    spacing = np.array([list(i.spacing[:3]) for i in items], dtype=np.float64)
    return clean, protected, labels, spacing


def example_slices(items: list[LoadedCase], count: int = 3) -> list[ExampleSlice]:
    """Up to ``count`` slices with structure from the training case holding the most (2D: the images holding most)."""
    with_structure = [i for i in items if i.labels.any()]
    if not with_structure:
        return []
    if with_structure[0].clean.ndim == 2:
        chosen = sorted(with_structure, key=lambda i: -int(np.count_nonzero(i.labels)))[:count]
        return [ExampleSlice(i.case_id, 0, i.clean, i.protected, i.labels > 0) for i in chosen]
    item = max(with_structure, key=lambda i: int(np.count_nonzero(i.labels)))
    zs = np.flatnonzero(item.labels.reshape(-1, item.labels.shape[-1]).any(axis=0))
    picks = sorted({int(zs[int(round(q * (len(zs) - 1)))]) for q in np.linspace(0.25, 0.75, count)})
    return [
        ExampleSlice(item.case_id, z, item.clean[..., z], item.protected[..., z], item.labels[..., z] > 0)
        for z in picks
    ]


def patch2d(cfg: AuditConfig, shape: Sequence[int]) -> tuple[int, int] | None:
    """Training patch of the slice victims: ``crop`` (multiple of 16, within the slice) natively, else none."""
    if not cfg.native:
        return None
    side = min(cfg.crop, *shape)
    side -= side % 16
    if side >= min(shape):
        return None  # the slice itself is no larger than the patch
    return (side, side)


def patch3d(cfg: AuditConfig, shape: Sequence[int], side: int | None) -> tuple[int, int, int]:
    """Training patch of ``unet3d``: ``crop3d`` natively (within the volume), else ``(size/4)^3`` (at least 16)."""
    if side is not None:  # resampled volumes (``size`` set)
        return (max(side // 2, 16),) * 3
    x, y, z = (max(16, min(cfg.crop3d, n - n % 8)) for n in shape)
    return (x, y, z)


def join(a: SliceSet, b: SliceSet | None) -> SliceSet:
    """Two slice sets as one (``b`` may be ``None``)."""
    if b is None:
        return a
    return SliceSet(*(np.concatenate([getattr(a, f.name), getattr(b, f.name)]) for f in dataclasses.fields(SliceSet)))


def victim_data_2d(cfg: AuditConfig, train: SliceSet, test: SliceSet, val: SliceSet | None) -> VictimData:
    patch = patch2d(cfg, train.labels.shape[1:])
    return VictimData(
        train.clean,
        train.protected,
        train.labels,
        train.groups,
        test.clean,
        test.labels,
        test.spacing,
        val.clean if val else None,
        val.protected if val else None,
        val.labels if val else None,
        patch,
        len(train.labels) if patch else None,
    )


def victim_data_3d(
    cfg: AuditConfig, fit: list[LoadedCase], test: list[LoadedCase], val: list[LoadedCase], side: int | None
) -> VictimData:
    if side is None:  # native resolution
        (c_x, p_x, y, _), (t_x, _, t_y, t_sp) = volumes_native(fit, cfg.crop3d), volumes_native(test, cfg.crop3d)
        v = volumes_native(val, cfg.crop3d) if val else None
    else:
        (c_x, p_x, y, _), (t_x, _, t_y, t_sp) = volumes(fit, side), volumes(test, side)
        v = volumes(val, side) if val else None
    return VictimData(
        c_x,
        p_x,
        y,
        np.arange(len(c_x)),
        t_x,
        t_y,
        t_sp,
        v[0] if v else None,
        v[1] if v else None,
        v[2] if v else None,
        patch3d(cfg, c_x.shape[1:], side),
        _PATCHES_PER_VOLUME * len(c_x) if cfg.native else None,
        sliding_window=cfg.native,
    )


def sample_patches(
    x: np.ndarray, y: np.ndarray, patch: tuple[int, ...], count: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` random crops ``patch`` from volumes ``(N, *spatial)``; every other crop is centred on structure."""
    n, spatial = x.shape[0], x.shape[1:]
    xs = np.empty((count, *patch), np.float32)
    ys = np.empty((count, *patch), y.dtype)
    for k in range(count):
        i = int(rng.integers(n))
        fg = np.argwhere(y[i] > 0) if k % 2 == 0 else np.zeros((0, len(spatial)))
        if len(fg):
            centre = fg[int(rng.integers(len(fg)))]
            start = [int(np.clip(c - p // 2, 0, s - p)) for c, p, s in zip(centre, patch, spatial)]
        else:
            start = [int(rng.integers(s - p + 1)) for p, s in zip(patch, spatial)]
        region = (i,) + tuple(slice(a, a + p) for a, p in zip(start, patch))
        xs[k], ys[k] = x[region], y[region]
    return xs, ys
