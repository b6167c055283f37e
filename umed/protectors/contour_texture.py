"""UMed: contour- and texture-aware unlearnable perturbations (Lin et al., "Unlearnable Examples For Medical
Image Segmentation", arXiv 2403.14250, 2024), reconstructed from the abstract (no official code exists).

Two generators read the slice (and, by default, its structure mask: the method uses the ground truth):

- the contour perturbator ``G_c`` (:class:`~umed.protectors.networks.CDCGenerator`, central difference
  convolutions) acts on the contour band ``C``: ``delta_c = eps_c * tanh(G_c(x))``;
- the texture perturbator ``G_t`` (:class:`~umed.protectors.networks.PlainGenerator`) acts on the interior
  ``T``: ``delta_t = clamp(eps_t * tanh(G_t(x)), -eps_t * tau(x), +eps_t * tau(x))`` with the texture map
  ``tau`` of :func:`umed.regions.texture_map`.

Both are multiplied per slice by ``eps_scale``. ``fit`` trains them error-minimising (min-min) against a surrogate
U-Net (:func:`~umed.protectors.surrogate.make_surrogate`, CE + Dice): generator steps minimise
``L(S(x + delta), y)``; the surrogate takes one step on ``x + delta`` every ``surrogate_every`` generator steps.
``perturb`` is one deterministic forward pass: UMed's speed advantage over per-sample optimisation (EM).

Known weakness and the knobs against it: plain min-min generators tend to converge to weak, low-amplitude
(period-4 stripe) patterns, while a high-energy pattern aligned with the labels is a strong shortcut. Two settings
let the generators spend their budget without hard-coding a pattern: ``saturation`` adds
``saturation * mean(1 - |delta| / bound)`` over the support to the loss (rewarding use of the whole budget), and
``pattern_init`` starts the generators' logits at a fixed label-aligned pattern ``pattern_gain * P``, which
training then refines (``P`` stays as an offset of the logits). ``P`` is in {-1, +1} and repeats from the image's
top-left corner: ``"sign"`` is +1 on the structure and -1 outside it; ``"checker"`` is a checkerboard of
``pattern_patch``-voxel blocks on the structure and its opposite outside; ``"patches"`` is an LSP-like random
patch pattern per class (structure, outside) drawn from the seed. Only its values on the support matter.

Robustness (opt-in, off by default): ``eot`` lists transforms of the attacker's pipeline
(:mod:`umed.protectors.eot`: blur, median, down-and-up sampling, low resolution, nnU-Net-style augmentation,
spectral masking). When set, every generator step and every surrogate step sees ``x + delta`` (and the labels)
through one transform drawn from ``["none", *eot]`` (expectation over transformations), so the generators are
rewarded only for what survives the data user's processing. ``perturb`` is unchanged.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import torch
from torch import nn

from umed import regions
from umed.errors import ConfigError
from umed.protectors.base import Budget, ProgressCallback, Protector, SliceBatch, finalize
from umed.protectors.crops import CropSampler
from umed.protectors.eot import AttackerView, check_eot
from umed.protectors.lsp import patch_pattern
from umed.protectors.networks import CDCGenerator, PlainGenerator
from umed.protectors.pgd import project
from umed.protectors.seeding import derive_seed, key_rng
from umed.protectors.settings import Setting, check_budget, resolve_settings
from umed.protectors.surrogate import (
    plain_state,
    seeded_torch,
    segmentation_loss,
    sub_state,
    to_tensor,
)
from umed.protectors.surrogate_pool import SurrogatePool
from umed.protectors.surrogate_training import curve

__all__ = ["UMedProtector"]

_PATTERN_TILE = 8  # patches per side of the repeating "patches" pattern table
_REGION_CHUNK = 64  # slices per texture-map call


class UMedProtector(Protector):
    """UMed's contour (CDC) and texture generators, trained min-min against a surrogate U-Net.

    Settings (all optional; every default is in the ``method_settings`` of the shipped config ``umed``,
    ``umed/configs/umed.yaml``, the one place their numbers live; * marks the ones tuned there):
        steps*: generator steps; ``epochs`` (None), when set, replaces it by ``ceil(epochs * n_slices / batch_size)``.
        batch_size*: crops per step, and slices per forward pass in ``perturb``.
        lr*: Adam learning rate of the generators. surrogate_lr (1e-3): of the surrogate.
        theta*: CDC theta of G_c. base_channels*, depth (3): generator width and depth.
        surrogate_every*: generator steps per surrogate step. surrogate_reinit_every* (0 = never): re-initialise
            the surrogate (and its optimiser) every N generator steps. surrogate_warmup (0): clean surrogate steps
            before min-min starts.
        crop*: training crop side (smaller slices are zero-padded). flips (True): random flips of crops.
        generator_input ("image+mask"): generator input channels, ``"image"`` or ``"image+mask"``.
        saturation*: weight of ``mean(1 - |delta| / bound)`` over the support (budget use).
        pattern_init*: ``"none"``, ``"sign"``, ``"checker"`` or ``"patches"``, the pattern P offsetting the logits
            (see the module docstring).
        pattern_gain*: logit offset ``gain * P`` (tanh(2) = 0.96). pattern_patch*: block side of ``"checker"`` and
            patch side of ``"patches"``, in voxels.
        texture_window (5), tau_min*: the texture map of :func:`umed.regions.texture_map`.
        eot ([] = off): transforms of :data:`umed.protectors.eot.EOT_NAMES` drawn (with ``"none"``) at every
            generator and surrogate step during ``fit`` (see the module docstring).

    Example:
        >>> import numpy as np
        >>> from umed.protectors import Budget, SliceBatch
        >>> fg = np.zeros((2, 32, 32), dtype=bool); fg[:, 8:20, 10:22] = True
        >>> batch = SliceBatch(np.full((2, 32, 32), 0.5, np.float32), fg, ["case/0", "case/1"])
        >>> protector = UMedProtector(Budget(4 / 255, 4 / 255, 3), seed=0, steps=2, crop=16, base_channels=4)
        >>> log = protector.fit(batch)
        >>> protector.perturb(batch).shape
        (2, 32, 32)
    """

    name = "umed"
    SETTINGS = {
        "steps": Setting(int, low=0),
        "epochs": Setting(float, low=0.0, low_open=True, optional=True),
        "batch_size": Setting(int, low=1),
        "lr": Setting(float, low=0.0, low_open=True),
        "surrogate_lr": Setting(float, low=0.0, low_open=True),
        "theta": Setting(float, low=0.0, high=1.0),
        "base_channels": Setting(int, low=1),
        "depth": Setting(int, low=1, high=6),
        "surrogate_every": Setting(int, low=1),
        "surrogate_reinit_every": Setting(int, low=0),
        "surrogates": Setting(int, low=1),
        "surrogate_warmup": Setting(int, low=0),
        "crop": Setting(int, low=8),
        "flips": Setting(bool),
        "generator_input": Setting(str, choices=("image", "image+mask")),
        "saturation": Setting(float, low=0.0),
        "pattern_init": Setting(str, choices=("none", "sign", "checker", "patches")),
        "pattern_gain": Setting(float, low=0.0),
        "pattern_patch": Setting(int, low=1),
        "texture_window": Setting(int, low=2),
        "tau_min": Setting(float, low=0.0, high=1.0),
        "eot": Setting(list),
    }

    def __init__(self, budget: Budget, *, seed: int = 0, **settings: Any) -> None:
        check_budget(self.name, budget)
        resolved = resolve_settings(self.name, self.SETTINGS, settings)
        resolved["eot"] = check_eot(self.name, resolved["eot"])
        super().__init__(budget, seed=int(seed), **resolved)
        self.contour: nn.Module | None = None
        self.texture: nn.Module | None = None
        rng = key_rng(self.seed, self.name, "pattern")
        self._pattern_tables = np.where(rng.random((2, _PATTERN_TILE, _PATTERN_TILE)) < 0.5, -1.0, 1.0)

    # ------------------------------------------------------------------------------------------- pieces

    def _build(self) -> tuple[nn.Module, nn.Module]:
        s = self.settings
        channels = 2 if s["generator_input"] == "image+mask" else 1
        with seeded_torch(derive_seed(self.seed, self.name, "contour")):
            contour = CDCGenerator(channels, 1, base_channels=s["base_channels"], depth=s["depth"], theta=s["theta"])
        with seeded_torch(derive_seed(self.seed, self.name, "texture")):
            texture = PlainGenerator(channels, 1, base_channels=s["base_channels"], depth=s["depth"])
        return contour, texture

    def _pattern(self, fg: np.ndarray) -> np.ndarray:
        """The logit offset pattern P ``(N, H, W)`` float32 in {-1, +1} for full (padded) slices."""
        mode = self.settings["pattern_init"]
        if mode == "sign":
            return np.where(fg, 1.0, -1.0).astype(np.float32)
        shape = fg.shape[1:]
        if mode == "checker":
            block = self.settings["pattern_patch"]
            rows, cols = np.ogrid[: shape[0], : shape[1]]
            checker = (((rows // block) + (cols // block)) % 2 * 2 - 1).astype(np.float32)
            return np.where(fg, checker[None], -checker[None]).astype(np.float32)
        roi = patch_pattern(self._pattern_tables[0], shape, self.settings["pattern_patch"])
        background = patch_pattern(self._pattern_tables[1], shape, self.settings["pattern_patch"])
        return np.where(fg, roi[None], background[None]).astype(np.float32)

    def _regions(self, images: np.ndarray, fg: np.ndarray) -> dict[str, np.ndarray]:
        width = self.budget.band_width
        band = regions.contour_band(fg, width, batch=True)
        tau = np.empty(images.shape, dtype=np.float32)
        for start in range(0, len(images), _REGION_CHUNK):  # bounded float64 temporaries on large training sets
            chunk = slice(start, start + _REGION_CHUNK)
            tau[chunk] = regions.texture_map(
                images[chunk],
                fg[chunk],
                window=self.settings["texture_window"],
                tau_min=self.settings["tau_min"],
                batch=True,
            )
        return {"image": images, "fg": fg, "band": band, "inner": fg & ~band, "tau": tau}

    def _delta(self, parts: dict[str, torch.Tensor], scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The (projected) perturbation and its per-voxel bound for tensors ``(B, 1, H, W)``; ``scale (B, 1, 1, 1)``."""
        x = parts["image"]
        inputs = torch.cat([x, parts["fg"]], dim=1) if self.settings["generator_input"] == "image+mask" else x
        if self.contour is None or self.texture is None:
            raise ConfigError(f"method '{self.name}': not fitted (call fit() or load_state_dict() first)")
        logits_c, logits_t = self.contour(inputs), self.texture(inputs)
        if "pattern" in parts:
            offset = self.settings["pattern_gain"] * parts["pattern"]
            logits_c, logits_t = logits_c + offset, logits_t + offset
        eps_c = float(self.budget.eps_contour) * scale
        eps_t = float(self.budget.eps_texture) * scale
        limit_t = eps_t * parts["tau"]
        band, inner = parts["band"], parts["inner"]
        delta_c = eps_c * torch.tanh(logits_c)
        delta_t = torch.clamp(eps_t * torch.tanh(logits_t), -limit_t, limit_t)
        bound = band * eps_c + inner * limit_t
        delta = band * delta_c + inner * delta_t
        return project(delta, x, bound), bound

    def _tensors(self, arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        return {name: to_tensor(array) for name, array in arrays.items()}

    def _draw(
        self, sampler: CropSampler, rng: np.random.Generator, scale_all: np.ndarray
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """One training batch of crops: the parts ``(B, 1, S, S)``, the labels and the budget scale ``(B, 1, 1, 1)``."""
        crops = sampler.sample(rng, self.settings["batch_size"])
        parts = {name: sampler.tensor(crops, name) for name in ("image", "fg", "band", "inner", "tau")}
        if self.settings["pattern_init"] != "none":
            full = self._pattern(sampler.arrays["fg"][crops.index])
            parts["pattern"] = to_tensor(crops.take(full, selected=True))
        scale = torch.from_numpy(scale_all[crops.index].astype(np.float32)).reshape(-1, 1, 1, 1)
        return parts, parts["fg"], scale

    # --------------------------------------------------------------------------------------- Protector

    def fit(self, batch: SliceBatch, *, progress: ProgressCallback | None = None) -> dict[str, Any]:
        """Min-min training of G_c and G_t against a surrogate U-Net on random crops of ``batch``.

        Returns:
            Log: steps, surrogate steps and re-initialisations, curves of at most 20 points (generator loss =
            surrogate CE + Dice on ``x + delta`` plus the saturation term; that CE + Dice alone; surrogate loss;
            budget use = mean ``|delta| / bound`` over the support) and the last budget use.
        """
        s = self.settings
        images = np.asarray(batch.images, dtype=np.float32)
        fg = np.asarray(batch.structures, dtype=bool)
        scale_all = np.asarray(batch.eps_scale, dtype=np.float32).reshape(-1)
        arrays = self._regions(images, fg)
        sampler = CropSampler(arrays, crop=s["crop"], flips=s["flips"])
        rng = key_rng(self.seed, self.name, "fit")
        steps = s["steps"] if s["epochs"] is None else math.ceil(s["epochs"] * len(images) / s["batch_size"])

        self.contour, self.texture = self._build()
        generator_params = list(self.contour.parameters()) + list(self.texture.parameters())
        optimizer_g = torch.optim.Adam(generator_params, lr=s["lr"])
        loss_fn = segmentation_loss()
        pool = SurrogatePool(
            seed=self.seed,
            method=self.name,
            size=s["surrogates"],
            reinit_every=s["surrogate_reinit_every"],
            lr=s["surrogate_lr"],
        )
        draw = functools.partial(self._draw, sampler, rng, scale_all)
        attacker_view = AttackerView(s["eot"], derive_seed(self.seed, self.name, "eot"))

        surrogate_losses: list[float] = []
        for _ in range(s["surrogate_warmup"]):
            parts, y, _ = draw()
            surrogate_losses.append(pool.step(loss_fn, parts["image"], y))

        generator_losses: list[float] = []
        segmentation_losses: list[float] = []
        usage: list[float] = []
        self.contour.train()
        self.texture.train()
        for step in range(1, steps + 1):
            parts, y, scale = draw()
            delta, bound = self._delta(parts, scale)
            x_view, y_view = attacker_view(parts["image"] + delta, y)
            loss = pool.loss(loss_fn, x_view, y_view)
            segmentation_losses.append(float(loss.detach()))
            allowed = bound > 0
            used = (delta.abs() / torch.where(allowed, bound, torch.ones_like(bound)))[allowed]
            if s["saturation"] > 0 and used.numel():
                loss = loss + s["saturation"] * (1.0 - used).mean()
            optimizer_g.zero_grad(set_to_none=True)
            loss.backward()
            optimizer_g.step()
            generator_losses.append(float(loss.detach()))
            usage.append(float(used.detach().mean()) if used.numel() else 0.0)

            if step % s["surrogate_every"] == 0:
                parts, y, scale = draw()
                with torch.no_grad():
                    delta, _ = self._delta(parts, scale)
                    x_view, y_view = attacker_view(parts["image"] + delta, y)
                surrogate_losses.append(pool.step(loss_fn, x_view, y_view))
            pool.advance(step, steps=steps)
            if progress is not None:
                progress("umed: training generators", step, steps)
        self.contour.eval()
        self.texture.eval()
        curves = {"generator": generator_losses, "segmentation": segmentation_losses, "surrogate": surrogate_losses}
        return _fit_log(steps, pool.reinits, curves, usage, attacker_view.draws if s["eot"] else None)

    def perturb(self, batch: SliceBatch) -> np.ndarray:
        """One forward pass of both generators per batch of ``batch_size`` slices.

        Returns:
            ``(B, H, W)`` float32: ``|delta| <= eps_contour * eps_scale`` on the band, ``<= eps_texture * tau *
            eps_scale`` in the interior, exactly 0 elsewhere.

        Raises:
            ConfigError: the protector was neither fitted nor loaded.
        """
        if self.contour is None or self.texture is None:
            raise ConfigError(f"method '{self.name}': not fitted (call fit() or load_state_dict() first)")
        images = np.asarray(batch.images, dtype=np.float32)
        fg = np.asarray(batch.structures, dtype=bool)
        scale_all = np.asarray(batch.eps_scale, dtype=np.float32).reshape(-1)
        arrays = self._regions(images, fg)
        if self.settings["pattern_init"] != "none":
            arrays["pattern"] = self._pattern(fg)
        out = np.zeros(images.shape, dtype=np.float32)
        bounds = np.zeros(images.shape, dtype=np.float32)
        self.contour.eval()
        self.texture.eval()
        size = self.settings["batch_size"]
        with torch.no_grad():
            for start in range(0, len(images), size):
                chunk = slice(start, start + size)
                if not (arrays["band"][chunk].any() or arrays["inner"][chunk].any()):
                    continue
                parts = self._tensors({name: array[chunk] for name, array in arrays.items()})
                scale = torch.from_numpy(scale_all[chunk].copy()).reshape(-1, 1, 1, 1)
                delta, bound = self._delta(parts, scale)
                out[chunk] = delta.squeeze(1).numpy()
                bounds[chunk] = bound.squeeze(1).numpy()
        return finalize(out, bounds)

    def state_dict(self) -> dict[str, Any]:
        """Generator weights as plain tensors: ``contour.*`` and ``texture.*`` (empty before fitting)."""
        if self.contour is None or self.texture is None:
            return {}
        return {**plain_state(self.contour, "contour"), **plain_state(self.texture, "texture")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Rebuild both generators (from the settings) and load :meth:`state_dict` output.

        Raises:
            ConfigError: weights missing or not matching the generators the settings describe.
        """
        contour, texture = self._build()
        try:
            contour.load_state_dict(sub_state(state, "contour"))
            texture.load_state_dict(sub_state(state, "texture"))
        except RuntimeError as error:
            raise ConfigError(f"method '{self.name}': generator weights do not fit the settings ({error})") from error
        contour.eval()
        texture.eval()
        self.contour, self.texture = contour, texture


def _fit_log(
    steps: int, generation: int, losses: dict[str, list[float]], usage: list[float], eot_draws: dict[str, int] | None
) -> dict[str, Any]:
    """The fit's log: steps, surrogate steps and re-initialisations, curves of at most 20 points, budget use."""
    return {
        "steps": steps,
        "surrogate_steps": len(losses["surrogate"]),
        "surrogate_reinits": generation,
        "generator_loss_curve": curve(losses["generator"]),
        "segmentation_loss_curve": curve(losses["segmentation"]),
        "surrogate_loss_curve": curve(losses["surrogate"]),
        "budget_use_curve": curve(usage),
        "budget_use_last": round(usage[-1], 5) if usage else None,
        **({"eot_draws": dict(sorted(eot_draws.items()))} if eot_draws is not None else {}),
    }
