"""Shared machinery of the protectors: settings, seeding, the surrogate U-Net, crops, PGD and min-min training.

EM, TAP, SEP and SALM differ only in how they train their surrogate(s) and in the sign and support of their PGD
attack; UMed reuses the surrogate, the crops and the loss for its min-min generator training. Keeping one
implementation here means a fix to the loss, the crops or the projection reaches every method at once.

Conventions:
    - Tensors are ``(B, 1, H, W)`` float32 in umed's normalised intensity space (``data_range = 1``).
    - A *bound* map ``(B, 1, H, W)`` holds the L-inf budget of every voxel (``eps * eps_scale`` on the support, 0
      elsewhere); a projected perturbation satisfies ``|delta| <= bound`` exactly and keeps ``x + delta`` inside
      ``[min(x, 0), max(x, 1)]``, the range :func:`umed.protect.protect_array` clips to.
    - Randomness comes from explicit generators seeded by :func:`derive_seed` (run seed + method + slice key);
      the global torch RNG is only touched inside :func:`seeded_torch`, which restores it.
"""

from __future__ import annotations

import hashlib
import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from umed import regions
from umed.errors import ConfigError
from umed.protectors.base import Budget, ProgressCallback, Protector, SliceBatch

__all__ = [
    "Setting",
    "resolve_settings",
    "check_budget",
    "derive_seed",
    "key_rng",
    "seeded_torch",
    "make_surrogate",
    "segmentation_loss",
    "segment",
    "project",
    "PreparedSlices",
    "prepare_slices",
    "CropBatch",
    "CropSampler",
    "fit_surrogate",
    "pgd",
    "top_k_mask",
    "plain_state",
    "sub_state",
    "to_tensor",
    "curve",
    "finalize",
    "SURROGATE_SETTINGS",
    "SurrogateProtector",
]

SURROGATE_CHANNELS = (16, 32, 64, 128)
SURROGATE_STRIDES = (2, 2, 2)
_SURROGATE_MULTIPLE = 8  # 2 ** len(SURROGATE_STRIDES)


# ------------------------------------------------------------------------------------------------------ settings


@dataclass(frozen=True)
class Setting:
    """One method setting: default, type and allowed range (JSON-native values only, so configs round-trip)."""

    default: Any
    kind: type
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None
    optional: bool = False
    low_open: bool = False


def _coerce(method: str, key: str, value: Any, spec: Setting) -> Any:
    def fail(expected: str) -> ConfigError:
        return ConfigError(f"method '{method}': setting '{key}' (expected {expected}, got {value!r})")

    if value is None:
        if spec.optional:
            return None
        raise fail(f"a {spec.kind.__name__}")
    if spec.kind is bool:
        if not isinstance(value, bool):
            raise fail("true or false")
        return value
    if spec.kind is int:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer, float)) or float(value) != int(value):
            raise fail("an integer")
        value = int(value)
    elif spec.kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise fail("a number")
        value = float(value)
        if not math.isfinite(value):
            raise fail("a finite number")
    elif spec.kind is str:
        if not isinstance(value, str):
            raise fail("a string")
        if spec.choices and value not in spec.choices:
            raise fail(f"one of {list(spec.choices)}")
        return value
    if spec.low is not None and (value < spec.low or (spec.low_open and value == spec.low)):
        raise fail(f"{'>' if spec.low_open else '>='} {spec.low}")
    if spec.high is not None and value > spec.high:
        raise fail(f"<= {spec.high}")
    return value


def resolve_settings(method: str, specs: dict[str, Setting], given: dict[str, Any]) -> dict[str, Any]:
    """Check ``given`` against ``specs`` and return every setting (defaults filled in), JSON-native.

    Raises:
        ConfigError: an unknown setting, a wrong type or a value out of range.
    """
    unknown = sorted(set(given) - set(specs))
    if unknown:
        raise ConfigError(f"method '{method}': unknown setting(s) {unknown} (expected some of {sorted(specs)})")
    return {key: _coerce(method, key, given.get(key, spec.default), spec) for key, spec in specs.items()}


def check_budget(method: str, budget: Budget) -> None:
    """Refuse a budget no method can honour.

    Raises:
        ConfigError: an epsilon that is not a finite number in (0, 1], a band width that is not an integer >= 0.
    """
    for name in ("eps_contour", "eps_texture"):
        value = getattr(budget, name)
        number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
        if not (number and math.isfinite(value) and 0 < value <= 1):
            raise ConfigError(f"method '{method}': budget {name} (expected a value in (0, 1], got {value!r})")
    width = budget.band_width
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 0:
        raise ConfigError(f"method '{method}': budget band_width (expected an integer >= 0, got {width!r})")


# ------------------------------------------------------------------------------------------------------ seeding


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any parts (run seed, method name, slice key), stable across runs and platforms.

    Python's ``hash`` is salted per process, so SHA-256 of the parts' text is used instead.
    """
    digest = hashlib.sha256("\x1f".join(str(part) for part in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def key_rng(*parts: object) -> np.random.Generator:
    """``np.random.default_rng`` seeded by :func:`derive_seed` of ``parts``."""
    return np.random.default_rng(derive_seed(*parts))


@contextmanager
def seeded_torch(seed: int) -> Iterator[None]:
    """Run a block (network initialisation) with the global torch RNG seeded, then restore it.

    torch and MONAI initialise weights from the global RNG; forking keeps the caller's RNG state unchanged.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


# ---------------------------------------------------------------------------------------------------- surrogate


def make_surrogate(*, seed: int = 0, in_channels: int = 1, num_classes: int = 2) -> nn.Module:
    """The surrogate segmentation network every protector trains against: a small MONAI 2D U-Net.

    ``monai.networks.nets.UNet(spatial_dims=2, channels=(16, 32, 64, 128), strides=(2, 2, 2), num_res_units=2)``,
    initialised from ``seed`` without changing the global RNG.

    Args:
        seed: initialisation seed.
        in_channels: input channels (1: the image).
        num_classes: output classes (2: background, structure).

    Shape:
        Input ``(B, in_channels, H, W)`` with ``H, W`` multiples of 8 (use :func:`segment` for any size); output
        ``(B, num_classes, H, W)`` logits.
    """
    from monai.networks.nets import UNet

    with seeded_torch(seed):
        return UNet(
            spatial_dims=2,
            in_channels=in_channels,
            out_channels=num_classes,
            channels=SURROGATE_CHANNELS,
            strides=SURROGATE_STRIDES,
            num_res_units=2,
        )


def segmentation_loss() -> nn.Module:
    """CE + Dice (MONAI ``DiceCELoss(to_onehot_y=True, softmax=True)``), per-sample Dice, mean over the batch.

    Shape:
        ``loss(logits (B, 2, H, W), labels (B, 1, H, W) in {0, 1}) -> scalar``.
    """
    from monai.losses import DiceCELoss

    return DiceCELoss(to_onehot_y=True, softmax=True)


def segment(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Run a surrogate on any ``H, W``: replicate-pad to a multiple of 8, crop the logits back.

    Shape:
        ``x (B, 1, H, W) -> logits (B, num_classes, H, W)``.
    """
    height, width = x.shape[-2:]
    pad_h, pad_w = (-height) % _SURROGATE_MULTIPLE, (-width) % _SURROGATE_MULTIPLE
    if pad_h or pad_w:
        x = torch.nn.functional.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    return model(x)[..., :height, :width]


def project(delta: torch.Tensor, x: torch.Tensor, bound: torch.Tensor) -> torch.Tensor:
    """Make ``delta`` admissible: ``x + delta`` inside ``[min(x, 0), max(x, 1)]``, then ``|delta| <= bound``.

    The bound is applied last so it holds exactly in float32; voxels with ``bound == 0`` get exactly ``+0.0``.

    Shape:
        All ``(B, 1, H, W)``; returns the same shape.
    """
    lower = torch.clamp(x, max=0.0)
    upper = torch.clamp(x, min=1.0)
    delta = torch.clamp(x + delta, lower, upper) - x
    delta = torch.clamp(delta, -bound, bound)
    return torch.where(bound > 0, delta, torch.zeros_like(delta))


# --------------------------------------------------------------------------------------------------------- data


@dataclass
class PreparedSlices:
    """A :class:`SliceBatch` turned into the arrays the protectors work on.

    Shape:
        images: ``(N, H, W)`` float32. fg, support: ``(N, H, W)`` bool. bound: ``(N, H, W)`` float32,
        ``eps_max * eps_scale`` on the support and 0 elsewhere. eps_scale: ``(N,)`` float32.
    """

    images: np.ndarray
    fg: np.ndarray
    support: np.ndarray
    bound: np.ndarray
    eps_scale: np.ndarray
    keys: list[str]


def prepare_slices(batch: SliceBatch, budget: Budget, eps: float | None = None) -> PreparedSlices:
    """Support and per-voxel bound of a batch (``eps`` defaults to ``budget.eps_max``), slice by slice."""
    images = np.asarray(batch.images, dtype=np.float32)
    fg = np.asarray(batch.structures, dtype=bool)
    allowed = regions.support(fg, budget.band_width, batch=True)
    scale = np.asarray(batch.eps_scale, dtype=np.float32).reshape(-1)
    if scale.shape[0] != images.shape[0] or not np.all(np.isfinite(scale)) or np.any(scale < 0):
        raise ConfigError(f"eps_scale: expected {images.shape[0]} finite values >= 0 (got shape {scale.shape})")
    per_slice = np.float32(budget.eps_max if eps is None else eps) * scale
    bound = np.where(allowed, per_slice[:, None, None], np.float32(0)).astype(np.float32)
    return PreparedSlices(images, fg, allowed, bound, scale, list(batch.keys))


def to_tensor(array: np.ndarray) -> torch.Tensor:
    """``(B, H, W)`` numpy to a ``(B, 1, H, W)`` float32 tensor (a copy)."""
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).unsqueeze(1)


@dataclass
class CropBatch:
    """Where a training batch was cut: slice index, top-left corner and flips of each crop."""

    index: np.ndarray
    top: np.ndarray
    left: np.ndarray
    flip_h: np.ndarray
    flip_w: np.ndarray
    size: int

    def _window(self, b: int) -> tuple[slice, slice]:
        return slice(self.top[b], self.top[b] + self.size), slice(self.left[b], self.left[b] + self.size)

    def _flip(self, b: int, crop: np.ndarray) -> np.ndarray:
        if self.flip_h[b]:
            crop = crop[::-1]
        if self.flip_w[b]:
            crop = crop[:, ::-1]
        return crop

    def take(self, array: np.ndarray, *, selected: bool = False) -> np.ndarray:
        """Cut the crops out of ``array`` ``(N, H, W)`` (or ``(B, H, W)`` already indexed, ``selected=True``).

        Returns:
            ``(B, size, size)``, flipped as the batch was.
        """
        out = []
        for b in range(len(self.index)):
            source = array[b] if selected else array[self.index[b]]
            rows, cols = self._window(b)
            out.append(self._flip(b, source[rows, cols]))
        return np.ascontiguousarray(np.stack(out))

    def put(self, array: np.ndarray, values: np.ndarray) -> None:
        """Write crops ``(B, size, size)`` back into ``array`` ``(N, H, W)`` in place (flips undone)."""
        for b in range(len(self.index)):
            rows, cols = self._window(b)
            array[self.index[b], rows, cols] = self._flip(b, values[b])


class CropSampler:
    """Random square crops of training slices, each containing structure when the slice has any.

    Slices smaller than the crop are zero-padded (structure False) at the bottom and right once, up front. A crop
    of a slice with structure is placed uniformly among the windows that contain one randomly chosen structure
    voxel, so small structures (a tumour is 1 to 2% of a brain slice) are seen at every step. Flips (up-down and
    left-right, each with probability 1/2) stand for the victim's augmentation.

    Args:
        arrays: name to ``(N, H, W)`` arrays cut together; must contain ``"fg"`` (bool).
        crop: crop side in voxels.
        flips: whether to flip.
    """

    def __init__(self, arrays: dict[str, np.ndarray], *, crop: int, flips: bool = True) -> None:
        fg = arrays["fg"]
        n, height, width = fg.shape
        pad_h, pad_w = max(0, crop - height), max(0, crop - width)
        self.arrays = {
            name: np.pad(a, ((0, 0), (0, pad_h), (0, pad_w))) if (pad_h or pad_w) else a for name, a in arrays.items()
        }
        self.crop = int(crop)
        self.flips = bool(flips)
        self.count = n
        self.shape = (height + pad_h, width + pad_w)
        self._fg_voxels = [np.flatnonzero(self.arrays["fg"][i]) for i in range(n)]

    def sample(self, rng: np.random.Generator, batch_size: int) -> CropBatch:
        """Draw ``batch_size`` crops (slices drawn with replacement)."""
        height, width = self.shape
        size = self.crop
        index = rng.integers(0, self.count, size=batch_size)
        top = np.zeros(batch_size, dtype=np.int64)
        left = np.zeros(batch_size, dtype=np.int64)
        for b, i in enumerate(index):
            voxels = self._fg_voxels[i]
            if voxels.size:
                row, col = divmod(int(voxels[rng.integers(0, voxels.size)]), width)
                top[b] = rng.integers(max(0, row - size + 1), min(row, height - size) + 1)
                left[b] = rng.integers(max(0, col - size + 1), min(col, width - size) + 1)
            else:
                top[b] = rng.integers(0, height - size + 1)
                left[b] = rng.integers(0, width - size + 1)
        if self.flips:
            flip_h, flip_w = rng.random(batch_size) < 0.5, rng.random(batch_size) < 0.5
        else:
            flip_h = flip_w = np.zeros(batch_size, dtype=bool)
        return CropBatch(index, top, left, flip_h, flip_w, size)

    def tensor(self, crops: CropBatch, name: str) -> torch.Tensor:
        """The crops of one named array as a ``(B, 1, size, size)`` float32 tensor."""
        return to_tensor(crops.take(self.arrays[name]))


# ----------------------------------------------------------------------------------------------------- training


NoiseUpdate = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def fit_surrogate(
    model: nn.Module,
    sampler: CropSampler,
    rng: np.random.Generator,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    noise: np.ndarray | None = None,
    noise_update: NoiseUpdate | None = None,
    on_step: Callable[[int], None] | None = None,
    progress: ProgressCallback | None = None,
    description: str = "training surrogate",
) -> dict[str, Any]:
    """Train a surrogate on crops, clean or (min-min) on sample-wise noise updated between its steps.

    Each step draws a batch of crops. With ``noise`` (a ``(N, H, W)`` store of the training slices' current
    perturbations, padded like the sampler's arrays) and ``noise_update``, the crops' noise is first updated by
    ``noise_update(x, y, bound, delta) -> delta`` against the current surrogate and written back (the inner
    "min" of EM, Huang et al. 2021), then the surrogate takes one Adam step on ``x + delta``. Without them it
    trains on clean crops (TAP, SEP).

    Args:
        model: the surrogate (trained in place).
        sampler: crops with arrays ``image``, ``fg`` and ``bound``.
        rng: source of crop positions and flips.
        steps: surrogate steps.
        batch_size: crops per step.
        lr: Adam learning rate.
        noise: the noise store, changed in place.
        noise_update: the inner noise step.
        on_step: called with the step number (1-based) after each step (SEP keeps checkpoints).
        progress: ``progress(description, step, steps)``.
        description: progress text.

    Returns:
        A small log: steps, first and last loss, a loss curve of at most 20 averaged points.
    """
    loss_fn = segmentation_loss()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses: list[float] = []
    for step in range(1, steps + 1):
        crops = sampler.sample(rng, batch_size)
        x = sampler.tensor(crops, "image")
        y = sampler.tensor(crops, "fg")
        if noise is not None and noise_update is not None:
            bound = sampler.tensor(crops, "bound")
            delta = noise_update(x, y, bound, project(to_tensor(crops.take(noise)), x, bound))
            crops.put(noise, delta.squeeze(1).numpy())
            x = x + delta
        model.train()
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(segment(model, x), y)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if on_step is not None:
            on_step(step)
        if progress is not None:
            progress(description, step, steps)
    model.eval()
    return {
        "steps": steps,
        "loss_first": _round(losses[:1]),
        "loss_last": _round(losses[-1:]),
        "loss_curve": curve(losses),
    }


def _round(values: Sequence[float]) -> float | None:
    return round(float(values[0]), 5) if values else None


def curve(values: Sequence[float], points: int = 20) -> list[float]:
    """At most ``points`` averages of consecutive chunks of ``values`` (a JSON-sized loss curve)."""
    if not values:
        return []
    chunks = np.array_split(np.asarray(values, dtype=np.float64), min(points, len(values)))
    return [round(float(chunk.mean()), 5) for chunk in chunks]


def pgd(
    models: Sequence[nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    bound: torch.Tensor,
    *,
    steps: int,
    step_size: float,
    maximize: bool,
    init: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sign-gradient PGD on the segmentation loss, averaged over ``models``, in a per-voxel L-inf ball.

    Error-minimising (EM, SALM: ``maximize=False``) or error-maximising (TAP, SEP: ``maximize=True``). The step is
    ``step_size * bound`` per voxel (``step_size`` is a fraction of the budget; 0.25 gives eps/4), and every
    iterate is :func:`project`-ed. Gradients flow only to ``delta``; the models' weights get none.

    Args:
        models: surrogate(s), in eval mode for the attack.
        x: clean images ``(B, 1, H, W)``.
        y: labels ``(B, 1, H, W)`` in {0, 1}.
        bound: per-voxel budget ``(B, 1, H, W)``; 0 freezes a voxel.
        steps: PGD steps.
        step_size: step as a fraction of ``bound``.
        maximize: ascend (True) or descend (False) the loss.
        init: starting perturbation (projected first); zeros when ``None``.

    Returns:
        ``delta`` ``(B, 1, H, W)``, detached, ``|delta| <= bound``.
    """
    loss_fn = segmentation_loss()
    modes = [model.training for model in models]
    for model in models:
        model.eval()
    delta = project(torch.zeros_like(x) if init is None else init.detach(), x, bound)
    direction = 1.0 if maximize else -1.0
    try:
        for _ in range(steps):
            delta.requires_grad_(True)
            loss = sum(loss_fn(segment(model, x + delta), y) for model in models) / len(models)
            (grad,) = torch.autograd.grad(loss, delta)
            delta = project(delta.detach() + direction * step_size * bound * grad.sign(), x, bound)
    finally:
        for model, mode in zip(models, modes):
            model.train(mode)
    return delta.detach()


def top_k_mask(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, support: torch.Tensor, k_fraction: float
) -> torch.Tensor:
    """SALM's significant voxels: per slice, the ``K`` support voxels with the largest ``|dL/dx|``.

    ``K = max(1, floor(k_fraction * |support|))`` for a slice with support, 0 otherwise; ties go to the lower
    raster index (stable), so the mask is deterministic.

    Shape:
        ``x, y, support (B, 1, H, W) -> mask (B, 1, H, W)`` bool.
    """
    mode = model.training
    model.eval()
    try:
        inputs = x.detach().clone().requires_grad_(True)
        loss = segmentation_loss()(segment(model, inputs), y)
        (grad,) = torch.autograd.grad(loss, inputs)
    finally:
        model.train(mode)
    score = grad.abs().reshape(grad.shape[0], -1).numpy().astype(np.float64)
    allowed = support.reshape(support.shape[0], -1).numpy().astype(bool)
    mask = np.zeros_like(allowed)
    for b in range(score.shape[0]):
        count = int(allowed[b].sum())
        if count == 0:
            continue
        k = max(1, int(math.floor(k_fraction * count)))
        ranked = np.argsort(-np.where(allowed[b], score[b], -1.0), kind="stable")[:k]
        mask[b, ranked] = True
    return torch.from_numpy(mask.reshape(support.shape))


def plain_state(module: nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    """A module's state as plain CPU tensors under ``prefix.`` (loadable with ``torch.load(weights_only=True)``)."""
    return {f"{prefix}.{key}": value.detach().cpu().clone() for key, value in module.state_dict().items()}


def sub_state(state: dict[str, Any], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of ``state`` under ``prefix.``, with the prefix removed."""
    head = f"{prefix}."
    return {key[len(head) :]: value for key, value in state.items() if key.startswith(head)}


# ------------------------------------------------------------------------------------------- surrogate protector


SURROGATE_SETTINGS: dict[str, Setting] = {
    "steps": Setting(10, int, low=0),
    "step_size": Setting(0.25, float, low=0.0, low_open=True, high=1.0),
    "random_init": Setting(True, bool),
    "train_steps": Setting(500, int, low=1),
    "batch_size": Setting(8, int, low=1),
    "crop": Setting(128, int, low=8),
    "lr": Setting(1e-3, float, low=0.0, low_open=True),
    "flips": Setting(True, bool),
}
"""Settings every surrogate-based baseline shares: ``steps``/``step_size``/``random_init`` of the PGD run at
perturb time (``step_size`` is a fraction of the budget), ``train_steps``, ``batch_size``, ``crop``, ``lr`` and
``flips`` of the surrogate training."""


class SurrogateProtector(Protector):
    """Base of the per-sample baselines that attack trained surrogate(s) with PGD (EM, TAP, SEP, SALM).

    Subclasses implement :meth:`_fit` (train and return the surrogates) and :meth:`_attack` (one batch of
    slices). This class resolves settings, prepares regions and bounds, batches slices by ``batch_size``, seeds
    each slice's PGD start from ``(seed, method, key)`` and enforces support and budget on the result. The budget
    is ``budget.eps_max * eps_scale`` on the whole support.
    """

    SETTINGS: ClassVar[dict[str, Setting]] = SURROGATE_SETTINGS

    def __init__(self, budget: Budget, *, seed: int = 0, **settings: Any) -> None:
        check_budget(self.name, budget)
        super().__init__(budget, seed=int(seed), **resolve_settings(self.name, self.SETTINGS, settings))
        self.models: list[nn.Module] = []

    # -- subclass hooks
    def _fit(
        self,
        prepared: PreparedSlices,
        sampler: CropSampler,
        rng: np.random.Generator,
        progress: ProgressCallback | None,
    ) -> tuple[list[nn.Module], dict[str, Any]]:
        raise NotImplementedError

    def _attack(
        self, x: torch.Tensor, y: torch.Tensor, bound: torch.Tensor, init: torch.Tensor, support: torch.Tensor
    ) -> torch.Tensor:
        raise NotImplementedError

    # -- Protector
    def fit(self, batch: SliceBatch, *, progress: ProgressCallback | None = None) -> dict[str, Any]:
        """Train the surrogate(s) on crops of ``batch``; returns the training log."""
        prepared = prepare_slices(batch, self.budget)
        sampler = CropSampler(
            {"image": prepared.images, "fg": prepared.fg, "bound": prepared.bound},
            crop=self.settings["crop"],
            flips=self.settings["flips"],
        )
        rng = key_rng(self.seed, self.name, "fit")
        self.models, log = self._fit(prepared, sampler, rng, progress)
        return log

    def perturb(self, batch: SliceBatch) -> np.ndarray:
        """Per-slice PGD against the fitted surrogate(s); ``(B, H, W)`` float32, see :class:`Protector`.

        Raises:
            ConfigError: the protector was neither fitted nor loaded.
        """
        if not self.models:
            raise ConfigError(f"method '{self.name}': not fitted (call fit() or load_state_dict() first)")
        prepared = prepare_slices(batch, self.budget)
        out = np.zeros(prepared.images.shape, dtype=np.float32)
        size = self.settings["batch_size"]
        for start in range(0, len(prepared.keys), size):
            chunk = slice(start, start + size)
            if not prepared.support[chunk].any():
                continue
            bound_np = prepared.bound[chunk]
            if self.settings["random_init"]:
                shape = bound_np.shape[1:]
                keys = prepared.keys[chunk]
                starts = [key_rng(self.seed, self.name, key).uniform(-1.0, 1.0, size=shape) for key in keys]
                init_np = np.stack(starts).astype(np.float32) * bound_np
            else:
                init_np = np.zeros_like(bound_np)
            x, y, bound = to_tensor(prepared.images[chunk]), to_tensor(prepared.fg[chunk]), to_tensor(bound_np)
            support = to_tensor(prepared.support[chunk]) > 0
            delta = self._attack(x, y, bound, project(to_tensor(init_np), x, bound), support)
            out[chunk] = delta.squeeze(1).numpy()
        return finalize(out, prepared.bound)

    def state_dict(self) -> dict[str, Any]:
        """Surrogate weights as ``surrogate.{i}.{name}`` plain tensors (empty before fitting)."""
        state: dict[str, Any] = {}
        for index, model in enumerate(self.models):
            state.update(plain_state(model, f"surrogate.{index}"))
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Rebuild the surrogate(s) from :meth:`state_dict` output.

        Raises:
            ConfigError: no surrogate weights in ``state`` or weights that do not fit the surrogate.
        """
        indices = sorted({int(key.split(".")[1]) for key in state if key.startswith("surrogate.")})
        if not indices:
            raise ConfigError(f"method '{self.name}': the state holds no surrogate weights")
        models = []
        for index in indices:
            model = make_surrogate(seed=0)
            try:
                model.load_state_dict(sub_state(state, f"surrogate.{index}"))
            except RuntimeError as error:
                raise ConfigError(f"method '{self.name}': surrogate weights do not fit ({error})") from error
            model.eval()
            models.append(model)
        self.models = models


def finalize(delta: np.ndarray, bound: np.ndarray) -> np.ndarray:
    """Enforce the contract on a numpy result: float32, ``|delta| <= bound``, exactly +0.0 where ``bound == 0``."""
    delta = np.clip(delta.astype(np.float32), -bound, bound)
    return np.where(bound > 0, delta, np.float32(0)).astype(np.float32)
