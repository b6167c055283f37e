"""The loop that trains one victim and scores it on clean test data every epoch.

Scoring: Dice over all test images jointly (sum of intersections over sum of sizes, :func:`umed.metrics.dice`), per
epoch, so that every selection rule of :mod:`umed.audit.selection` can pick its epoch; HD95 with MONAI's
``compute_hausdorff_distance(percentile=95)`` algorithm per test image (:func:`umed.metrics.hd95_per_image`).

:func:`train_victim` reads as its steps: check the arrays (:func:`_checked`), apply the defense's data part
(:func:`_defended`), build the network (:func:`_build`), then per epoch train (:func:`_train_epoch`) and score
(:func:`_score_epoch`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from umed.audit.defenses import Defense, get_defense, mix_clean
from umed.audit.records import VictimRun
from umed.audit.samples import sample_patches
from umed.audit.selection import select_epochs
from umed.audit.victims import build_victim, victim_divisor, victim_spatial_dims
from umed.errors import ConfigError, GeometryError
from umed.metrics import dice, dice_per_label, hd95_per_image

if TYPE_CHECKING:
    import torch
    from torch import nn

    from umed.protectors.base import ProgressCallback

__all__ = ["TrainSettings", "train_victim"]


@dataclass(frozen=True)
class TrainSettings:
    """How one victim is trained.

    Attributes:
        epochs: passes over the training data (in patch mode: ``patches_per_epoch`` crops each).
        batch_size: samples per step.
        seed: run seed.
        victim: a name of :data:`umed.audit.victims.VICTIM_NAMES`.
        lr: Adam learning rate.
        defense: a :class:`~umed.audit.defenses.Defense` or its name (``None`` = ``"none"``): its data part
            transforms the training arrays once, its batch part every batch.
        patch_size: train on random crops of this size; every size divisible by the victim's divisor and at least
            twice it.
        patches_per_epoch: crops per epoch in patch mode (default ``8 * N``).
        sliding_window: score the test samples by sliding-window inference (MONAI ``sliding_window_inference``,
            windows of ``patch_size``, overlap 0.25) instead of one forward pass each: for volumes too large to pass
            whole; their size then need not be divisible by the victim's downsampling.
        description: the progress task name (default ``"{victim} {defense}"``).

    Example:
        >>> TrainSettings(epochs=2, batch_size=4, seed=0).victim
        'unet'
    """

    epochs: int
    batch_size: int
    seed: int
    victim: str = "unet"
    lr: float = 1e-3
    defense: str | Defense | None = None
    patch_size: tuple[int, ...] | None = None
    patches_per_epoch: int | None = None
    sliding_window: bool = False
    description: str | None = None


@dataclass
class _Arrays:
    """The checked arrays of one run (float32 images, integer labels)."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    val_x: np.ndarray | None
    val_y: np.ndarray | None


@dataclass
class _Curves:
    """Per-epoch results of one run."""

    losses: list[float] = field(default_factory=list)
    dices: list[float] = field(default_factory=list)
    hd95s: list[float] = field(default_factory=list)
    val_dices: list[float] = field(default_factory=list)


def _check_pair(x: np.ndarray, y: np.ndarray, what: str, ndim: int, divisor: int | None) -> None:
    if x.shape != y.shape:
        raise GeometryError(f"{what}: images and labels differ in shape (expected {x.shape}, got {y.shape})")
    if x.ndim != ndim + 1:
        raise GeometryError(
            f"{what}: expected {ndim}D samples (N, {'H, W' if ndim == 2 else 'X, Y, Z'}) (got shape {x.shape})"
        )
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
    settings: TrainSettings,
    *,
    progress: ProgressCallback | None = None,
    clean_train_x: np.ndarray | None = None,
    train_groups: np.ndarray | None = None,
    test_spacing: np.ndarray | Sequence[Sequence[float]] | None = None,
    val_x: np.ndarray | None = None,
    val_y: np.ndarray | None = None,
    on_epoch: Callable[[nn.Module, int], None] | None = None,
) -> VictimRun:
    """Train one victim (DiceCE loss, Adam, random flips) and score it on the clean test set after every epoch.

    Everything random comes from ``default_rng(seed)`` and ``torch.Generator().manual_seed(seed)`` (weights under
    ``torch.random.fork_rng()``), so the global RNG is untouched; same inputs, same run.

    Args:
        train_x: training images ``(N, H, W)`` (slice victims) or ``(N, X, Y, Z)`` (``unet3d``), float32, normalised.
        train_y: training labels, same shape, integer; every value > 0 is structure.
        test_x: clean test images ``(M, *spatial)``; never trained on.
        test_y: test labels, same shape (the per-label Dice uses their values).
        settings: victim, epochs, batch size, learning rate, seed, defense, patches (:class:`TrainSettings`).
        progress: ``callback(description, epoch, epochs)``.
        clean_train_x: unprotected training images (for the ``mix`` defense).
        train_groups: ``(N,)`` case index per training sample (for ``mix``).
        test_spacing: ``(M, ndim)`` pixel size in mm of every test sample, for HD95 in mm.
        val_x: validation images ``(V, *spatial)`` (same kind as the training data: protected for a protected run),
            never trained on; scored every epoch like the test set for nnU-Net's selection rule.
        val_y: validation labels, same shape.
        on_epoch: ``callback(model, epoch)`` after every epoch (1-based, model in eval mode; :mod:`umed.verify`).

    Returns: a :class:`~umed.audit.records.VictimRun`.

    Raises:
        GeometryError: shapes disagree or are not divisible by the victim's downsampling. ConfigError: unknown victim
        or defense, ``epochs``/``batch_size`` < 1, no samples.

    Example:
        >>> import numpy as np
        >>> x = np.zeros((2, 16, 16), np.float32); y = np.zeros((2, 16, 16), np.uint8); y[:, 4:9, 4:9] = 1
        >>> run = train_victim(x + y, y, x + y, y, TrainSettings(epochs=1, batch_size=2, seed=0))
        >>> run.epochs, run.predictions.shape
        (1, (2, 16, 16))
    """
    import torch

    name = str(settings.victim).strip().lower()
    arrays, patch = _checked(name, settings, train_x, train_y, test_x, test_y, val_x, val_y)
    defense = settings.defense if isinstance(settings.defense, Defense) else get_defense(settings.defense or "none")
    description = settings.description or f"{name} {defense.name}"
    ndim, window = victim_spatial_dims(name), patch if settings.sliding_window else None

    started, rng = time.perf_counter(), np.random.default_rng(settings.seed)
    generator = torch.Generator().manual_seed(int(settings.seed))
    x_data, y_data, val_in, details = _defended(defense, arrays, clean_train_x, train_groups, rng)
    model, loss_fn, optimizer = _build(name, ndim, settings)
    curves, predictions = _Curves(), np.zeros(arrays.test_x.shape, np.uint8)
    if progress:
        progress(description, 0, settings.epochs)
    for epoch in range(settings.epochs):
        ex, ey = (
            (x_data, y_data)
            if patch is None
            else sample_patches(x_data, y_data, patch, settings.patches_per_epoch or 8 * len(x_data), rng)
        )
        curves.losses.append(
            _train_epoch(model, loss_fn, optimizer, defense, ex, ey, settings.batch_size, ndim, generator)
        )
        predictions = _score_epoch(model, arrays, val_in, settings.batch_size, window, test_spacing, curves)
        if on_epoch is not None:
            on_epoch(model, epoch + 1)  # after scoring: the model is in eval mode
        if progress:
            progress(description, epoch + 1, settings.epochs)
    return _victim_run(
        name, defense.name, settings, curves, predictions, arrays, time.perf_counter() - started, details
    )


def _checked(
    name: str,
    settings: TrainSettings,
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    val_x: np.ndarray | None,
    val_y: np.ndarray | None,
) -> tuple[_Arrays, tuple[int, ...] | None]:
    """The arrays as float32 images and integer labels, and the patch size, after checking shapes and settings."""
    divisor = victim_divisor(name)
    ndim = victim_spatial_dims(name)
    if settings.epochs < 1 or settings.batch_size < 1:
        raise ConfigError(
            f"train_victim: epochs and batch_size must be >= 1 (got {settings.epochs}, {settings.batch_size})"
        )
    arrays = _Arrays(
        np.asarray(train_x, dtype=np.float32),
        np.asarray(train_y),
        np.asarray(test_x, dtype=np.float32),
        np.asarray(test_y),
        None,
        None,
    )
    patch = None if settings.patch_size is None else tuple(int(p) for p in settings.patch_size)
    _check_pair(arrays.train_x, arrays.train_y, "training data", ndim, None if patch else divisor)
    if settings.sliding_window and patch is None:
        raise ConfigError("train_victim: sliding_window needs a patch_size (the window)")
    _check_pair(arrays.test_x, arrays.test_y, "test data", ndim, None if settings.sliding_window else divisor)
    if val_x is not None:
        arrays.val_x, arrays.val_y = np.asarray(val_x, dtype=np.float32), np.asarray(val_y)
        _check_pair(arrays.val_x, arrays.val_y, "validation data", ndim, None if settings.sliding_window else divisor)
    if patch is not None and (
        len(patch) != ndim
        or any(p % divisor or p < 2 * divisor or p > s for p, s in zip(patch, arrays.train_x.shape[1:]))
    ):
        raise GeometryError(
            f"patch_size: expected {ndim} sizes divisible by {divisor}, at least {2 * divisor} and within "
            f"{arrays.train_x.shape[1:]} (got {patch})"
        )
    return arrays, patch


def _defended(
    defense: Defense,
    arrays: _Arrays,
    clean_train_x: np.ndarray | None,
    train_groups: np.ndarray | None,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, dict[str, Any]]:
    """The defense's data part: ``(x, y as float32 0/1, validation images, details)``."""
    details: dict[str, Any] = {}
    train_x = arrays.train_x
    if defense.name == "mix" and clean_train_x is not None:
        groups = np.arange(len(train_x)) if train_groups is None else np.asarray(train_groups)
        x_data, made_clean = mix_clean(
            train_x, np.asarray(clean_train_x, np.float32), groups, ratio=defense.poison_ratio, rng=rng
        )
        y_data = arrays.train_y
        details["clean_groups"] = made_clean
    else:
        x_data, y_data = defense.prepare(train_x, arrays.train_y, clean_x=clean_train_x, groups=train_groups, rng=rng)
    y_data = (np.asarray(y_data) > 0).astype(np.float32)
    val_in = arrays.val_x
    if (
        val_in is not None and arrays.val_y is not None
    ):  # a data-level defense is applied to the whole dataset the user holds, validation included
        val_in = defense.prepare(val_in, arrays.val_y)[0]
    return x_data, y_data, val_in, details


def _build(name: str, ndim: int, settings: TrainSettings) -> tuple[nn.Module, Any, torch.optim.Optimizer]:
    """A fresh victim (weights seeded with the run seed, the global RNG left as it was), DiceCE loss and Adam."""
    import torch
    from monai.losses import DiceCELoss

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(settings.seed))
        model = build_victim(name, spatial_dims=ndim)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    return model, loss_fn, optimizer


def _train_epoch(
    model: nn.Module,
    loss_fn: Any,
    optimizer: torch.optim.Optimizer,
    defense: Defense,
    ex: np.ndarray,
    ey: np.ndarray,
    batch_size: int,
    ndim: int,
    generator: torch.Generator,
) -> float:
    """One pass over ``(ex, ey)`` in a random order with random flips per sample and axis; the mean training loss."""
    import torch

    model.train()
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
    return total / max(seen, 1)


def _score_epoch(
    model: nn.Module,
    arrays: _Arrays,
    val_in: np.ndarray | None,
    batch_size: int,
    window: tuple[int, ...] | None,
    test_spacing: np.ndarray | Sequence[Sequence[float]] | None,
    curves: _Curves,
) -> np.ndarray:
    """Score the model on the test (and validation) samples, append to ``curves``; the test predictions."""
    model.eval()
    predictions = _predict(model, arrays.test_x, batch_size, window)
    if val_in is not None and arrays.val_y is not None:
        curves.val_dices.append(dice(_predict(model, val_in, batch_size, window), arrays.val_y > 0))
    test_target = arrays.test_y > 0
    curves.dices.append(dice(predictions, test_target))
    hd = hd95_per_image(predictions, test_target, spacing=test_spacing)
    curves.hd95s.append(float(np.nanmean(hd)) if np.isfinite(hd).any() else float("nan"))
    return predictions


def _victim_run(
    name: str,
    defense: str,
    settings: TrainSettings,
    curves: _Curves,
    predictions: np.ndarray,
    arrays: _Arrays,
    seconds: float,
    details: dict[str, Any],
) -> VictimRun:
    """The run's record from its per-epoch curves and last predictions."""
    dices, hd95s = curves.dices, curves.hd95s
    best = int(select_epochs(dices)["best"] or 1) - 1  # "best" is always an epoch
    return VictimRun(
        victim=name,
        defense=defense,
        seed=int(settings.seed),
        epochs=settings.epochs,
        train_loss=curves.losses,
        test_dice=dices,
        test_hd95=hd95s,
        best_dice=dices[best],
        best_epoch=best + 1,
        last_dice=dices[-1],
        best_hd95=hd95s[best],
        last_hd95=hd95s[-1],
        dice_per_label=dice_per_label(predictions, arrays.test_y),
        predictions=predictions,
        n_train=len(arrays.train_x),
        n_test=len(arrays.test_x),
        seconds=seconds,
        details=details,
        val_dice=curves.val_dices,
    )


def _predict(model: nn.Module, x: np.ndarray, batch_size: int, window: tuple[int, ...] | None) -> np.ndarray:
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
                if not isinstance(logits, torch.Tensor):  # MONAI returns a tuple or dict only for such predictors
                    raise TypeError(
                        f"victim: expected one logits tensor from the network (got {type(logits).__name__})"
                    )
                out[i] = logits.argmax(dim=1)[0].numpy().astype(np.uint8)
        else:
            for start in range(0, len(x), batch_size):
                xb = torch.from_numpy(x[start : start + batch_size])[:, None]
                out[start : start + batch_size] = model(xb).argmax(dim=1).numpy().astype(np.uint8)
    return out
