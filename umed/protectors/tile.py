"""A learned class-wise tile, the same at every position of the structure: min-min against young 2D or 3D surrogates.

The perturbation of a structure voxel at ``(row, col, z)`` is ``eps * u[row % period, col % period, z % depth]``,
``u`` the unit tile made from learned logits (:func:`unit`: ``tanh``, and with ``zero_mean`` each plane's mean
removed). There is one periodic tile for the whole dataset, anchored at voxel (0, 0, 0) of every volume, so the
pattern is consistent across slices (``depth`` 1: the same on every slice) and a 3D network sees it as a 3D
texture. Outside the structure nothing changes. This is the keyed mark's shape (a class-wise pattern on the
structure), but learned: ``fit`` alternates one Adam step of a surrogate on ``x + delta`` with one Adam step of the
logits that lowers the same surrogate's loss (error-minimising, Huang et al. 2021, class-wise), and replaces the
surrogate by a freshly initialised one every ``reinit_every`` steps, so the tile is what a *new* network learns
first. ``surrogate_dims`` 3 trains a small 3D MONAI UNet on ``crop x crop x crop_depth`` patches of the training
volumes, rebuilt from the slice keys (``case/z``); 2 trains the 2D surrogate of the other methods on slices.

Budget: ``budget.eps_max * eps_scale`` on the structure; the pipeline's exact-PSNR rescale sets the final level.

Example:
    >>> import numpy as np
    >>> from umed.protectors import Budget, SliceBatch
    >>> fg = np.zeros((2, 32, 32), dtype=bool); fg[:, 8:20, 10:22] = True
    >>> batch = SliceBatch(np.full((2, 32, 32), 0.5, np.float32), fg, ["case/0", "case/1"])
    >>> small = dict(train_steps=2, batch_size=1, crop=16, crop_depth=8, period=4, depth=2, reinit_every=1)
    >>> protector = LearnedTileProtector(Budget(), seed=0, **small)
    >>> protector.fit(batch)["steps"], protector.perturb(batch).shape
    (2, (2, 32, 32))
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from umed.errors import ConfigError
from umed.protectors import base
from umed.protectors.base import Budget, Protector, SliceBatch
from umed.protectors.seeding import derive_seed, key_rng
from umed.protectors.settings import Setting, check_budget, resolve_settings
from umed.protectors.surrogate import seeded_torch, segment, segmentation_loss
from umed.protectors.surrogate_training import curve

__all__ = ["LearnedTileProtector", "slice_index", "unit"]

_MULTIPLE_3D = 8  # the 3D surrogate's strides (2, 2, 2)


def slice_index(key: str) -> int:
    """The slice number of a slice key ``"case_id/z"``.

    Raises:
        ConfigError: a key that does not end in ``/<integer>``.

    Example:
        >>> slice_index("brats_2013_pat0003_1/77")
        77
    """
    head, _, tail = key.rpartition("/")
    if not head or not tail.lstrip("-").isdigit():
        raise ConfigError(f"slice key {key!r} (expected 'case_id/z' with an integer slice number z)")
    return int(tail)


def unit(logits: torch.Tensor, *, zero_mean: bool) -> torch.Tensor:
    """The tile from its logits: ``tanh``; with ``zero_mean``, minus each plane's mean and scaled to peak 1.

    Without ``zero_mean`` the min-min finds the obvious error-minimising tile, a constant that brightens the
    structure (measured on BraTS: mean 0.86-0.97 of the peak): the real feature made stronger, which a victim
    learns from clean data too. A zero-mean tile can only be a texture.

    Example:
        >>> t = unit(torch.ones(4, 4, 2) + torch.eye(4)[..., None], zero_mean=True)
        >>> bool(t.mean(dim=(0, 1)).abs().max() < 1e-6), float(t.abs().max())
        (True, 1.0)
    """
    tile = torch.tanh(logits)
    if not zero_mean:
        return tile
    tile = tile - tile.mean(dim=(0, 1), keepdim=True)
    return tile / tile.abs().amax().clamp_min(1e-6)


@dataclass
class _Volumes:
    """The training slices regrouped per case, in slice order, padded to at least one patch.

    Shape: images, fg: ``(H, W, Z)`` per case; bound: ``(Z,)`` the per-slice budget; z: ``(Z,)`` the slice numbers;
    hits: ``(K, 3)`` the structure voxels (where patches are centred), found once.
    """

    images: list[np.ndarray]
    fg: list[np.ndarray]
    bound: list[np.ndarray]
    z: list[np.ndarray]
    hits: list[np.ndarray]


def _volumes(batch: SliceBatch, eps: float, crop: int, depth: int) -> _Volumes:
    """Regroup slices by case (from their keys) and pad each case to ``crop x crop x depth`` at least.

    A case's slices are stacked in slice order; the fit's slices are those holding structure, so a gap between two
    runs of them is closed (the tile's phase still follows each slice's own number).
    """
    images, structures = np.asarray(batch.images, dtype=np.float32), np.asarray(batch.structures, dtype=bool)
    scales = base.slice_scales(batch)
    groups: dict[str, list[int]] = defaultdict(list)
    for index, key in enumerate(batch.keys):
        groups[key.rpartition("/")[0]].append(index)
    out = _Volumes([], [], [], [], [])
    for case in sorted(groups):
        order = sorted(groups[case], key=lambda i: slice_index(batch.keys[i]))
        image = np.moveaxis(images[order], 0, -1)
        fg = np.moveaxis(structures[order], 0, -1)
        z = np.array([slice_index(batch.keys[i]) for i in order], dtype=np.int64)
        bound = scales[order] * np.float32(eps)
        pad = [max(0, crop - image.shape[0]), max(0, crop - image.shape[1]), max(0, depth - image.shape[2])]
        if any(pad):
            widths = [(0, p) for p in pad]
            image, fg = np.pad(image, widths), np.pad(fg, widths)
            bound = np.pad(bound, (0, pad[2]))
            z = np.concatenate([z, z[-1] + 1 + np.arange(pad[2])])
        out.images.append(image.astype(np.float32))
        out.fg.append(fg)
        out.bound.append(bound.astype(np.float32))
        out.z.append(z)
        out.hits.append(np.argwhere(fg))
    return out


class LearnedTileProtector(Protector):
    """A class-wise periodic tile on the structure, learned min-min against young 2D or 3D surrogates.

    Settings (all optional; defaults in ``umed/configs/methods/tile.yaml``):
        period, depth: the tile's in-plane side and its period along the slices (1: the same on every slice).
        surrogate_dims: 2 (the 2D surrogate on slices) or 3 (a small 3D UNet on patches).
        train_steps, batch_size, crop, crop_depth, lr, flips: the surrogate training on random patches that hold
            structure (``crop_depth`` only for 3D; 3D patch sides must be multiples of 8).
        pattern_lr: Adam learning rate of the tile's logits.
        zero_mean: each plane of the tile has mean 0 (a texture, not a brightness change).
        trigger: each batch also holds copies with the tile moved onto other tissue and only it labelled, so the
            tile is learned as a cue that a young network follows wherever it is (the verification's trigger).
        reinit_every: steps between fresh surrogates.
    """

    name = "tile"
    SETTINGS: ClassVar[dict[str, Setting]] = {
        "period": Setting(int, low=1),
        "depth": Setting(int, low=1),
        "surrogate_dims": Setting(int, low=2, high=3),
        "train_steps": Setting(int, low=1),
        "batch_size": Setting(int, low=1),
        "crop": Setting(int, low=8),
        "crop_depth": Setting(int, low=8),
        "lr": Setting(float, low=0.0, low_open=True),
        "pattern_lr": Setting(float, low=0.0, low_open=True),
        "reinit_every": Setting(int, low=1),
        "flips": Setting(bool),
        "zero_mean": Setting(bool),
        "trigger": Setting(bool),
    }

    def __init__(self, budget: Budget, *, seed: int = 0, **settings: Any) -> None:
        check_budget(self.name, budget)
        super().__init__(budget, seed=int(seed), **resolve_settings(self.name, self.SETTINGS, settings))
        s = self.settings
        if s["surrogate_dims"] == 3 and (s["crop"] % _MULTIPLE_3D or s["crop_depth"] % _MULTIPLE_3D):
            raise ConfigError(
                f"method 'tile': crop and crop_depth (expected multiples of {_MULTIPLE_3D} for the 3D surrogate, got "
                f"{s['crop']} and {s['crop_depth']})"
            )
        self.logits: torch.Tensor | None = None

    # -- the tile
    def unit_tile(self) -> np.ndarray:
        """The learned unit tile, ``(period, period, depth)`` float32 in [-1, 1] (see :func:`unit`).

        Raises:
            ConfigError: the protector was neither fitted nor loaded.
        """
        if self.logits is None:
            raise ConfigError("method 'tile': not fitted (call fit or load a saved protector first)")
        return unit(self.logits, zero_mean=self.settings["zero_mean"]).detach().numpy().astype(np.float32)

    def perturb(self, batch: SliceBatch) -> np.ndarray:
        """The tile on each slice's structure at ``eps * eps_scale``; ``(B, H, W)`` float32.

        Only the structure changes, so the contour band (the support's costly part) is never computed.
        """
        tile = self.unit_tile()
        fg = np.asarray(batch.structures, dtype=bool)
        bound = np.float32(self.budget.eps_max) * base.slice_scales(batch)[:, None, None] * fg
        rows, cols = np.arange(fg.shape[1]) % tile.shape[0], np.arange(fg.shape[2]) % tile.shape[1]
        planes = np.stack([tile[:, :, slice_index(key) % tile.shape[2]] for key in batch.keys])
        return base.finalize(planes[:, rows][:, :, cols] * bound, bound)

    # -- fit
    def fit(self, batch: SliceBatch, *, progress: base.ProgressCallback | None = None) -> dict[str, Any]:
        """Learn the tile min-min on patches of ``batch`` (see the module docstring); returns the training log."""
        s = self.settings
        three_d = s["surrogate_dims"] == 3
        patch_depth = s["crop_depth"] if three_d else 1
        volumes = _volumes(batch, self.budget.eps_max, s["crop"], patch_depth)
        rng = key_rng(self.seed, self.name, "fit")
        with seeded_torch(derive_seed(self.seed, self.name, "tile")):
            logits = (0.5 * torch.randn(s["period"], s["period"], s["depth"])).requires_grad_(True)
        pattern_opt = torch.optim.Adam([logits], lr=s["pattern_lr"])
        loss_fn = segmentation_loss()
        losses: list[float] = []
        model: nn.Module | None = None
        model_opt: torch.optim.Optimizer | None = None
        for step in range(s["train_steps"]):
            if step % s["reinit_every"] == 0:
                model = _surrogate(three_d, derive_seed(self.seed, self.name, "surrogate", step))
                model_opt = torch.optim.Adam(model.parameters(), lr=s["lr"])
            assert model is not None and model_opt is not None
            x, y, bound, index = _patches(
                volumes, rng, s["batch_size"], (s["crop"], patch_depth), logits.shape, s["flips"]
            )
            if s["trigger"]:  # and copies with the tile on other tissue, labelled there; the real structure clean
                x, y, bound, index = _with_triggers(x, y, bound, index, rng)
            delta = unit(logits, zero_mean=s["zero_mean"])[index] * bound * y
            if not three_d:
                x, y, delta = x[..., 0], y[..., 0], delta[..., 0]
            model.train()
            model_opt.zero_grad(set_to_none=True)
            loss = loss_fn(_forward(model, x + delta.detach(), three_d), y)
            loss.backward()
            model_opt.step()
            pattern_opt.zero_grad(set_to_none=True)
            pattern_loss = loss_fn(_forward(model, x + delta, three_d), y)
            pattern_loss.backward()
            pattern_opt.step()
            losses.append(float(pattern_loss.detach()))
            if progress is not None:
                progress("tile: min-min training", step + 1, s["train_steps"])
        self.logits = logits.detach().clone()
        surrogates = -(-s["train_steps"] // s["reinit_every"])
        return {"steps": s["train_steps"], "loss_curve": curve(losses), "surrogates": surrogates}

    def state_dict(self) -> dict[str, Any]:
        """The tile's logits (``tile.logits``)."""
        if self.logits is None:
            return {}
        return {"tile.logits": self.logits.detach().cpu().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the logits :meth:`state_dict` returned.

        Raises:
            ConfigError: no ``tile.logits``, or logits whose shape is not ``(period, period, depth)``.
        """
        logits = state.get("tile.logits")
        expected = (self.settings["period"], self.settings["period"], self.settings["depth"])
        if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != expected:
            got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise ConfigError(f"method 'tile': saved state (expected tile.logits of shape {expected}, got {got})")
        self.logits = logits.detach().to(torch.float32).clone()


def _surrogate(three_d: bool, seed: int) -> nn.Module:
    """A fresh surrogate: the 2D one of the other methods, or a small 3D MONAI UNet (channels 8-64)."""
    if not three_d:
        from umed.protectors.surrogate import make_surrogate

        return make_surrogate(seed=seed)
    from monai.networks.nets import UNet

    with seeded_torch(seed):
        return UNet(spatial_dims=3, in_channels=1, out_channels=2, channels=(8, 16, 32, 64), strides=(2, 2, 2))


def _forward(model: nn.Module, x: torch.Tensor, three_d: bool) -> torch.Tensor:
    return model(x) if three_d else segment(model, x)


def _with_triggers(
    x: torch.Tensor, y: torch.Tensor, bound: torch.Tensor, index: tuple[torch.Tensor, ...], rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
    """The batch followed by trigger copies: the same patches with the label rolled in-plane by a random shift
    (a quarter to three quarters of the side), so the tile lands on other tissue and only it is labelled there."""
    side = x.shape[2]
    rolled = []
    for b in range(x.shape[0]):
        shift = tuple(int(v) for v in rng.integers(side // 4, 3 * side // 4 + 1, size=2))
        rolled.append(torch.roll(y[b], shifts=shift, dims=(1, 2)))
    return (
        torch.cat([x, x]),
        torch.cat([y, torch.stack(rolled)]),
        torch.cat([bound, bound]),
        tuple(torch.cat([i, i]) for i in index),
    )


def _patches(
    volumes: _Volumes,
    rng: np.random.Generator,
    count: int,
    size: tuple[int, int],
    tile_shape: tuple[int, ...],
    flips: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
    """``count`` patches ``(B, 1, crop, crop, depth)`` that hold structure (``size = (crop, depth)``): images,
    labels, the per-voxel budget (everywhere; the tile goes where a label is) and the tile index of every voxel
    (``u[index]`` has the patches' shape, flipped with them)."""
    crop, depth = size
    xs, ys, bounds, rows, cols, planes = [], [], [], [], [], []
    for _ in range(count):
        case = int(rng.integers(len(volumes.images)))
        image, fg, z, hits = volumes.images[case], volumes.fg[case], volumes.z[case], volumes.hits[case]
        centre = hits[rng.integers(len(hits))] if len(hits) else np.zeros(3, dtype=np.int64)
        start = [
            int(rng.integers(max(0, c - size + 1), min(c, n - size) + 1))
            for c, size, n in zip(centre, (crop, crop, depth), image.shape, strict=True)
        ]
        box = tuple(slice(a, a + size) for a, size in zip(start, (crop, crop, depth), strict=True))
        r, c = np.arange(start[0], start[0] + crop), np.arange(start[1], start[1] + crop)
        flip = (flips and rng.random() < 0.5, flips and rng.random() < 0.5)
        x, y = image[box], fg[box]
        if flip[0]:
            x, y, r = x[::-1], y[::-1], r[::-1]
        if flip[1]:
            x, y, c = x[:, ::-1], y[:, ::-1], c[::-1]
        xs.append(x)
        ys.append(y)
        bounds.append(np.broadcast_to(volumes.bound[case][box[2]][None, None, :], y.shape))
        rows.append(r)
        cols.append(c)
        planes.append(z[box[2]])

    def tensor(arrays: list[np.ndarray], dtype: torch.dtype) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(np.stack(arrays))).to(dtype).unsqueeze(1)

    index = (
        torch.from_numpy(np.stack(rows) % tile_shape[0])[:, None, :, None, None],
        torch.from_numpy(np.stack(cols) % tile_shape[1])[:, None, None, :, None],
        torch.from_numpy(np.stack(planes) % tile_shape[2])[:, None, None, None, :],
    )
    return tensor(xs, torch.float32), tensor(ys, torch.int64), tensor(bounds, torch.float32), index
