"""Victim segmentation networks for the audit, and the loop that trains one and scores it on clean test data.

A *victim* is what a data user would train on the protected dataset. The audit trains each victim twice with the same
seed and settings, on protected and on clean training data, and compares their Dice on clean test images that were
never used for training. Victims are small MONAI networks with 2 output classes (background, structure) so that a
default audit of a few BraTS cases runs on a laptop CPU.

Scoring: Dice over all test images jointly (sum of intersections over sum of sizes, :func:`umed.metrics.dice`), per
epoch, so that early stopping (the best epoch) is reported beside the last; HD95 with
MONAI's ``compute_hausdorff_distance(percentile=95)`` algorithm per test image (see :func:`hd95_per_image`).
"""

from __future__ import annotations

import contextlib
import io
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from umed.defenses import Defense, get_defense
from umed.errors import ConfigError, GeometryError
from umed.metrics import dice, hd95_per_image
from umed.registry import Registry
from umed.selection import RULES, ema, select_epochs

if TYPE_CHECKING:
    from torch import nn

    from umed.protectors.base import ProgressCallback

__all__ = ["VICTIMS", "VICTIM_NAMES", "VictimRun", "build_victim", "dice_per_label", "train_victim", "victim_divisor",
           "victim_spatial_dims"]

@dataclass(frozen=True)
class _Victim:
    """A victim's registry entry: total downsampling (every spatial size must divide by it), spatial axes, builder."""

    divisor: int
    spatial_dims: int | None  # None: 2 or 3 as asked (slice victims), else fixed
    build: Callable[[int, int, int], "nn.Module"]


def _unet(spatial_dims: int, in_channels: int, out_channels: int) -> "nn.Module":
    from monai.networks.nets import UNet

    return UNet(spatial_dims, in_channels, out_channels, channels=(16, 32, 64, 128), strides=(2, 2, 2), num_res_units=2)


def _basicunet(spatial_dims: int, in_channels: int, out_channels: int) -> "nn.Module":
    from monai.networks.nets import BasicUNet

    with contextlib.redirect_stdout(io.StringIO()):  # BasicUNet prints its features
        return BasicUNet(spatial_dims, in_channels, out_channels, features=(16, 16, 32, 64, 128, 16))


def _segresnet(spatial_dims: int, in_channels: int, out_channels: int) -> "nn.Module":
    from monai.networks.nets import SegResNet

    return SegResNet(spatial_dims, init_filters=16, in_channels=in_channels, out_channels=out_channels)


def _attentionunet(spatial_dims: int, in_channels: int, out_channels: int) -> "nn.Module":
    from monai.networks.nets import AttentionUnet

    return AttentionUnet(spatial_dims, in_channels, out_channels, channels=(16, 32, 64, 128), strides=(2, 2, 2))


#: Every victim by name (the single list; :data:`VICTIM_NAMES` and the CLI help read it).
VICTIMS: Registry[_Victim] = Registry("victim", {
    "unet": _Victim(8, None, _unet),
    "basicunet": _Victim(16, None, _basicunet),
    "segresnet": _Victim(8, None, _segresnet),
    "attentionunet": _Victim(8, None, _attentionunet),
    "unet3d": _Victim(8, 3, _unet),
})

VICTIM_NAMES = VICTIMS.names()


def victim_divisor(name: str) -> int:
    """The factor every spatial size must be divisible by for victim ``name`` (its total downsampling).

    Raises:
        ConfigError: unknown victim (the message lists the valid ones).
    """
    return VICTIMS.get(name).divisor


def victim_spatial_dims(name: str) -> int:
    """2 for the slice victims, 3 for ``unet3d``."""
    return VICTIMS.get(name).spatial_dims or 2


def build_victim(name: str, *, spatial_dims: int = 2, in_channels: int = 1, out_channels: int = 2) -> "nn.Module":
    """A freshly initialised victim network (uses torch's global RNG: wrap in ``fork_rng`` to seed it).

    =================  =====================================================================================
    name               network
    =================  =====================================================================================
    ``unet``           ``monai.networks.nets.UNet`` channels (16, 32, 64, 128), strides (2, 2, 2), 2 res units
    ``basicunet``      ``BasicUNet`` features (16, 16, 32, 64, 128, 16)
    ``segresnet``      ``SegResNet`` init_filters 16
    ``attentionunet``  ``AttentionUnet`` channels (16, 32, 64, 128), strides (2, 2, 2)
    ``unet3d``         the ``unet`` above with ``spatial_dims=3`` (trained on 3D patches)
    =================  =====================================================================================

    Args:
        name: victim name (case-insensitive).
        spatial_dims: 2 or 3 (ignored for ``unet3d``, which is always 3).
        in_channels: image channels.
        out_channels: classes (2: background and structure).

    Returns:
        A ``torch.nn.Module`` mapping ``(B, in_channels, *spatial)`` to logits ``(B, out_channels, *spatial)``;
        every spatial size must be divisible by :func:`victim_divisor` and (for training, where the deepest instance
        norm needs more than one voxel) at least twice that.

    Raises:
        ConfigError: unknown name or ``spatial_dims`` not 2 or 3.
    """
    entry = VICTIMS.get(name)
    spatial_dims = entry.spatial_dims or spatial_dims
    if spatial_dims not in (2, 3):
        raise ConfigError(f"victim: spatial_dims must be 2 or 3 (got {spatial_dims})")
    return entry.build(spatial_dims, in_channels, out_channels)


@dataclass
class VictimRun:
    """One victim trained once and scored on clean test data every epoch.

    Attributes:
        victim: victim name.
        defense: defense name.
        seed: the run seed (model init, batch order, flips, defense randomness).
        epochs: epochs trained.
        train_loss: mean DiceCE training loss per epoch, length ``epochs``.
        test_dice: clean-test Dice (structure vs background, all test images jointly) per epoch.
        test_hd95: mean HD95 per epoch (see :func:`hd95_per_image`; mm when spacing was given, else pixels).
        best_dice: the highest per-epoch test Dice (what early stopping on the test set would give).
        best_epoch: 1-based epoch of ``best_dice``.
        last_dice: test Dice after the last epoch.
        best_hd95: HD95 at ``best_epoch``.
        last_hd95: HD95 after the last epoch.
        dice_per_label: last-epoch Dice per label value of the test labels (only when there are two or more); voxels
            of the other structure labels are ignored because the victim segments their union.
        predictions: last-epoch test predictions ``(N, *spatial)`` uint8 in {0, 1}.
        n_train: training samples (slices, or volumes in patch mode).
        n_test: test samples.
        seconds: wall time of the run.
        details: defense-specific notes (e.g. cases made clean by ``mix``).
        val_dice: Dice per epoch on the validation split of the training data (nnU-Net's rule, see
            :mod:`umed.selection`); empty when the run had no validation data.
    """

    victim: str
    defense: str
    seed: int
    epochs: int
    train_loss: list[float]
    test_dice: list[float]
    test_hd95: list[float]
    best_dice: float
    best_epoch: int
    last_dice: float
    best_hd95: float
    last_hd95: float
    dice_per_label: dict[int, float]
    predictions: np.ndarray = field(repr=False)
    n_train: int = 0
    n_test: int = 0
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)
    val_dice: list[float] = field(default_factory=list)

    def epoch(self, rule: str) -> int | None:
        """1-based epoch a selection rule of :data:`umed.selection.RULES` keeps (``None``: rule not available)."""
        return select_epochs(self.test_dice, self.val_dice or None)[rule]

    def dice(self, rule: str) -> float:
        """Clean-test Dice of the epoch ``rule`` keeps (``nan`` when the rule is not available)."""
        epoch = self.epoch(rule)
        return float(self.test_dice[epoch - 1]) if epoch else float("nan")

    def hd95(self, rule: str) -> float:
        """Mean HD95 of the epoch ``rule`` keeps (``nan`` when the rule is not available)."""
        epoch = self.epoch(rule)
        return float(self.test_hd95[epoch - 1]) if epoch else float("nan")

    @property
    def nnunet_dice(self) -> float:
        """Clean-test Dice of nnU-Net's ``checkpoint_best`` (best EMA of the validation Dice)."""
        return self.dice("nnunet")

    @classmethod
    def from_dict(cls, doc: dict[str, Any], predictions: np.ndarray) -> VictimRun:
        """The inverse of :meth:`to_dict` (``None`` floats back to ``nan``), with the predictions stored beside it."""

        def num(v: Any) -> float:
            return float("nan") if v is None else float(v)

        return cls(
            victim=doc["victim"], defense=doc["defense"], seed=int(doc["seed"]), epochs=int(doc["epochs"]),
            train_loss=[num(v) for v in doc["train_loss"]], test_dice=[num(v) for v in doc["test_dice"]],
            test_hd95=[num(v) for v in doc["test_hd95"]], best_dice=num(doc["best_dice"]),
            best_epoch=int(doc["best_epoch"]), last_dice=num(doc["last_dice"]), best_hd95=num(doc["best_hd95"]),
            last_hd95=num(doc["last_hd95"]), dice_per_label={int(k): num(v) for k, v in doc["dice_per_label"].items()},
            predictions=predictions, n_train=int(doc["n_train"]), n_test=int(doc["n_test"]),
            seconds=float(doc["seconds"]), details=dict(doc.get("details", {})),
            val_dice=[num(v) for v in doc.get("val_dice", [])],
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (everything except the predictions; non-finite floats as ``None``)."""

        def clean(v: float) -> float | None:
            return float(v) if v is not None and math.isfinite(v) else None

        return {
            "victim": self.victim,
            "defense": self.defense,
            "seed": self.seed,
            "epochs": self.epochs,
            "train_loss": [clean(v) for v in self.train_loss],
            "test_dice": [clean(v) for v in self.test_dice],
            "test_hd95": [clean(v) for v in self.test_hd95],
            "best_dice": clean(self.best_dice),
            "best_epoch": self.best_epoch,
            "last_dice": clean(self.last_dice),
            "best_hd95": clean(self.best_hd95),
            "last_hd95": clean(self.last_hd95),
            "dice_per_label": {str(k): clean(v) for k, v in self.dice_per_label.items()},
            "n_train": self.n_train,
            "n_test": self.n_test,
            "seconds": round(self.seconds, 2),
            "details": self.details,
            "val_dice": [clean(v) for v in self.val_dice],
            "val_dice_ema": [clean(v) for v in ema(self.val_dice)],
            "nnunet_epoch": self.epoch("nnunet"),
            "nnunet_dice": clean(self.dice("nnunet")),
            "nnunet_hd95": clean(self.hd95("nnunet")),
            "selection": {rule: {"epoch": self.epoch(rule), "dice": clean(self.dice(rule)),
                                 "hd95": clean(self.hd95(rule))} for rule in RULES},
        }


def dice_per_label(pred: np.ndarray, labels: np.ndarray) -> dict[int, float]:
    """Dice of a binary prediction against each label value, over all images jointly.

    The victim predicts the union of the structure labels, so for label ``l`` the voxels of the *other* nonzero
    labels are ignored (removed from prediction and target): a perfect union prediction scores 1 for every label.

    Args:
        pred: ``(N, *spatial)`` binary prediction.
        labels: ``(N, *spatial)`` integer label map (0 background).

    Returns:
        ``{label: dice}`` for every nonzero label present; empty when fewer than two labels are present.
    """
    pred = np.asarray(pred) != 0
    labels = np.asarray(labels)
    values = [int(v) for v in np.unique(labels) if v != 0]
    if len(values) < 2:
        return {}
    out = {}
    for value in values:
        keep = (labels == value) | (labels == 0)
        out[value] = dice(pred & keep, labels == value)
    return out


def _sample_patches(
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


def _check_pair(x: np.ndarray, y: np.ndarray, what: str, ndim: int, divisor: int | None) -> None:
    if x.shape != y.shape:
        raise GeometryError(f"{what}: images and labels differ in shape (expected {x.shape}, got {y.shape})")
    if x.ndim != ndim + 1:
        raise GeometryError(f"{what}: expected {ndim}D samples (N, {'H, W' if ndim == 2 else 'X, Y, Z'}) (got shape {x.shape})")
    if x.shape[0] == 0:
        raise ConfigError(f"{what}: no samples")
    if divisor and any(s % divisor or s < 2 * divisor for s in x.shape[1:]):
        raise GeometryError(
            f"{what}: every spatial size must be divisible by {divisor} and at least {2 * divisor} (got {x.shape[1:]})"
        )


def train_victim(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    *,
    victim: str = "unet",
    epochs: int,
    batch_size: int,
    lr: float = 1e-3,
    seed: int,
    defense: str | Defense | None = None,
    progress: ProgressCallback | None = None,
    description: str | None = None,
    clean_train_x: np.ndarray | None = None,
    train_groups: np.ndarray | None = None,
    patch_size: tuple[int, ...] | None = None,
    patches_per_epoch: int | None = None,
    test_spacing: Sequence[Sequence[float]] | None = None,
    sliding_window: bool = False,
    val_x: np.ndarray | None = None,
    val_y: np.ndarray | None = None,
) -> VictimRun:
    """Train one victim (DiceCE loss, Adam, random flips) and score it on the clean test set after every epoch.

    Everything random is drawn from ``numpy.random.default_rng(seed)`` and ``torch.Generator().manual_seed(seed)``;
    the weights are initialised inside ``torch.random.fork_rng()`` seeded with ``seed``, so the global RNG is left as
    it was and two calls with the same inputs and seed give the same run.

    Args:
        train_x: training images ``(N, H, W)`` (slice victims) or ``(N, X, Y, Z)`` (``unet3d``), float32, normalised.
        train_y: training labels, same shape, integer; every value > 0 is structure.
        test_x: clean test images ``(M, *spatial)``; never trained on.
        test_y: test labels, same shape (the per-label Dice uses their values).
        victim: a name of :data:`VICTIM_NAMES`.
        epochs: passes over the training data (in patch mode: ``patches_per_epoch`` crops each).
        batch_size: samples per step.
        lr: Adam learning rate.
        seed: run seed.
        defense: a :class:`~umed.defenses.Defense` or its name (``None`` = ``"none"``): its data part transforms the
            training arrays once, its batch part every batch.
        progress: ``callback(description, epoch, epochs)``.
        description: the progress task name (default ``"{victim} {defense}"``).
        clean_train_x: unprotected training images (for the ``mix`` defense).
        train_groups: ``(N,)`` case index per training sample (for ``mix``).
        patch_size: train on random crops of this size (3D victims); every size divisible by the victim's divisor
            and at least twice it.
        patches_per_epoch: crops per epoch in patch mode (default ``8 * N``).
        test_spacing: ``(M, ndim)`` pixel size in mm of every test sample, for HD95 in mm.
        sliding_window: score the test samples by sliding-window inference (MONAI ``sliding_window_inference``,
            windows of ``patch_size``, overlap 0.25) instead of one forward pass each: for volumes too large to pass
            whole; their size then need not be divisible by the victim's downsampling.
        val_x: validation images ``(V, *spatial)`` (same kind as the training data: protected for a protected run),
            never trained on; scored every epoch like the test set for nnU-Net's selection rule.
        val_y: validation labels, same shape.

    Returns:
        :class:`VictimRun`.

    Raises:
        GeometryError: shapes disagree or are not divisible by the victim's downsampling. ConfigError: unknown victim
        or defense, ``epochs``/``batch_size`` < 1, no samples.
    """
    import torch
    from monai.losses import DiceCELoss

    name = str(victim).strip().lower()
    divisor = victim_divisor(name)
    ndim = victim_spatial_dims(name)
    if epochs < 1 or batch_size < 1:
        raise ConfigError(f"train_victim: epochs and batch_size must be >= 1 (got {epochs}, {batch_size})")
    train_x = np.asarray(train_x, dtype=np.float32)
    test_x = np.asarray(test_x, dtype=np.float32)
    train_y, test_y = np.asarray(train_y), np.asarray(test_y)
    _check_pair(train_x, train_y, "training data", ndim, None if patch_size else divisor)
    if sliding_window and patch_size is None:
        raise ConfigError("train_victim: sliding_window needs a patch_size (the window)")
    _check_pair(test_x, test_y, "test data", ndim, None if sliding_window else divisor)
    if val_x is not None:
        val_x, val_y = np.asarray(val_x, dtype=np.float32), np.asarray(val_y)
        _check_pair(val_x, val_y, "validation data", ndim, None if sliding_window else divisor)
    if patch_size is not None:
        patch_size = tuple(int(p) for p in patch_size)
        if len(patch_size) != ndim or any(
            p % divisor or p < 2 * divisor or p > s for p, s in zip(patch_size, train_x.shape[1:])
        ):
            raise GeometryError(
                f"patch_size: expected {ndim} sizes divisible by {divisor}, at least {2 * divisor} and within "
                f"{train_x.shape[1:]} (got {patch_size})"
            )
    defense = defense if isinstance(defense, Defense) else get_defense(defense or "none")
    description = description or f"{name} {defense.name}"

    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(int(seed))
    details: dict[str, Any] = {}
    if defense.name == "mix" and clean_train_x is not None:
        from umed.defenses import mix_clean

        groups = np.arange(len(train_x)) if train_groups is None else np.asarray(train_groups)
        x_data, made_clean = mix_clean(train_x, np.asarray(clean_train_x, np.float32), groups, ratio=defense.poison_ratio, rng=rng)
        y_data = train_y
        details["clean_groups"] = made_clean
    else:
        x_data, y_data = defense.prepare(train_x, train_y, clean_x=clean_train_x, groups=train_groups, rng=rng)
    y_data = (np.asarray(y_data) > 0).astype(np.float32)
    if val_x is not None:  # a data-level defense is applied to the whole dataset the user holds, validation included
        val_x = defense.prepare(val_x, val_y)[0]

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = build_victim(name, spatial_dims=ndim)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    test_target = test_y > 0

    losses: list[float] = []
    dices: list[float] = []
    hd95s: list[float] = []
    val_dices: list[float] = []
    predictions = np.zeros(test_x.shape, np.uint8)
    if progress:
        progress(description, 0, epochs)
    for epoch in range(epochs):
        model.train()
        if patch_size is not None:
            count = patches_per_epoch or 8 * len(x_data)
            ex, ey = _sample_patches(x_data, y_data, patch_size, count, rng)
        else:
            ex, ey = x_data, y_data
        order = torch.randperm(len(ex), generator=generator).numpy()
        total, seen = 0.0, 0
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            xb = torch.from_numpy(np.ascontiguousarray(ex[index]))[:, None]
            yb = torch.from_numpy(np.ascontiguousarray(ey[index]))[:, None]
            for axis in range(ndim):  # random flips, per sample and axis
                flip = torch.rand(len(index), generator=generator) < 0.5
                if flip.any():
                    xb[flip] = torch.flip(xb[flip], dims=(2 + axis,))
                    yb[flip] = torch.flip(yb[flip], dims=(2 + axis,))
            xb, yb = defense.on_batch(xb, yb, model=model, loss_fn=loss_fn, generator=generator)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(index)
            seen += len(index)
        losses.append(total / max(seen, 1))

        model.eval()
        predictions = _predict(model, test_x, batch_size, patch_size if sliding_window else None)
        if val_x is not None:
            val_dices.append(dice(_predict(model, val_x, batch_size, patch_size if sliding_window else None), val_y > 0))
        dices.append(dice(predictions, test_target))
        hd = hd95_per_image(predictions, test_target, spacing=test_spacing)
        hd95s.append(float(np.nanmean(hd)) if np.isfinite(hd).any() else float("nan"))
        if progress:
            progress(description, epoch + 1, epochs)

    best = select_epochs(dices)["best"] - 1
    return VictimRun(
        victim=name,
        defense=defense.name,
        seed=int(seed),
        epochs=epochs,
        train_loss=losses,
        test_dice=dices,
        test_hd95=hd95s,
        best_dice=dices[best],
        best_epoch=best + 1,
        last_dice=dices[-1],
        best_hd95=hd95s[best],
        last_hd95=hd95s[-1],
        dice_per_label=dice_per_label(predictions, test_y),
        predictions=predictions,
        n_train=len(train_x),
        n_test=len(test_x),
        seconds=time.perf_counter() - started,
        details=details,
        val_dice=val_dices,
    )


def _predict(model: "nn.Module", x: np.ndarray, batch_size: int, window: tuple[int, ...] | None) -> np.ndarray:
    """Hard predictions ``(N, *spatial)`` uint8 of ``model`` (in eval mode) on ``x``: one forward pass per batch, or
    MONAI sliding-window inference with ``window`` patches (overlap 0.25) per sample."""
    import torch

    out = np.zeros(x.shape, np.uint8)
    with torch.no_grad():
        if window is not None:
            from monai.inferers import sliding_window_inference

            for i in range(len(x)):
                xb = torch.from_numpy(x[i : i + 1])[:, None]
                logits = sliding_window_inference(xb, window, sw_batch_size=4, predictor=model, overlap=0.25)
                out[i] = logits.argmax(dim=1)[0].numpy().astype(np.uint8)
        else:
            for start in range(0, len(x), batch_size):
                xb = torch.from_numpy(x[start : start + batch_size])[:, None]
                out[start : start + batch_size] = model(xb).argmax(dim=1).numpy().astype(np.uint8)
    return out
