"""Tests of every protector on small synthetic 2D slices: support, budget, determinism, state, settings."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from umed import regions
from umed.errors import ConfigError
from umed.protectors import PROTECTORS, make_protector
from umed.protectors.base import Budget, SliceBatch

BUDGET = Budget(eps_contour=8 / 255, eps_texture=6 / 255, band_width=2)
SEED = 7

METHODS = sorted(PROTECTORS)
MODEL_FREE = {"lsp", "ar", "random"}


def phantom(count: int = 4, shape=(40, 48), seed: int = 0) -> SliceBatch:
    """Textured disks of varying size and position on a noisy background; slice 3 has no structure."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    structures = np.stack([(yy - 18 - 2 * i) ** 2 + (xx - 22 - 3 * i) ** 2 <= (7 + 2 * i) ** 2 for i in range(count)])
    structures[3] = False
    images = 0.3 + 0.35 * structures + 0.04 * rng.standard_normal((count, *shape))
    images[:, :, : shape[1] // 2] += 0.1 * np.sin(yy[:, : shape[1] // 2] / 2.0)  # some texture
    scale = np.array([1.0, 0.5, 1.0, 1.0], dtype=np.float32)[:count]
    return SliceBatch(images.astype(np.float32), structures, [f"case{i % 2}/{i}" for i in range(count)], scale)


@pytest.fixture(scope="module")
def batch() -> SliceBatch:
    return phantom()


@pytest.fixture(scope="module")
def fitted(batch, tiny_fit_settings):
    """Each method fitted once on the phantom (module scope: the expensive part of these tests)."""
    out = {}
    for name in METHODS:
        protector = make_protector(name, BUDGET, seed=SEED, **tiny_fit_settings[name])
        protector.fit(batch)
        out[name] = protector
    return out


def allowed(batch: SliceBatch) -> np.ndarray:
    return regions.support(batch.structures, BUDGET.band_width, batch=True)


@pytest.mark.parametrize("name", METHODS)
def test_shape_dtype_support_and_budget(name, fitted, batch):
    delta = fitted[name].perturb(batch)
    assert delta.shape == batch.images.shape and delta.dtype == np.float32
    assert np.all(delta[~allowed(batch)] == 0)
    assert not delta[3].any()  # no structure, no change
    limit = np.float32(BUDGET.eps_max) * batch.eps_scale[:, None, None]
    assert np.all(np.abs(delta) <= limit)
    assert np.abs(delta).max() > 0


def test_umed_region_budgets(fitted, batch):
    """UMed: eps_contour on the band, eps_texture * tau inside, both times the per-slice scale."""
    delta = fitted["umed"].perturb(batch)
    band = regions.contour_band(batch.structures, BUDGET.band_width, batch=True)
    inner = batch.structures & ~band
    settings = fitted["umed"].settings  # the protector's texture map (its defaults are the shipped config's)
    tau = regions.texture_map(
        batch.images, batch.structures, batch=True, window=settings["texture_window"], tau_min=settings["tau_min"]
    )
    scale = batch.eps_scale[:, None, None]
    assert np.all(np.abs(delta)[band] <= np.broadcast_to(np.float32(BUDGET.eps_contour) * scale, delta.shape)[band])
    texture_limit = np.float32(BUDGET.eps_texture) * tau * scale
    assert np.all(np.abs(delta)[inner] <= texture_limit[inner] * (1 + 1e-6))
    assert np.abs(delta[inner]).max() > 0 and np.abs(delta[band]).max() > 0


@pytest.mark.parametrize("name", METHODS)
def test_perturb_is_deterministic(name, fitted, batch):
    first = fitted[name].perturb(batch)
    second = fitted[name].perturb(batch)
    assert first.tobytes() == second.tobytes()


@pytest.mark.parametrize("name", METHODS)
def test_same_seed_same_bytes_after_refit(name, fitted, batch, tiny_fit_settings):
    again = make_protector(name, BUDGET, seed=SEED, **tiny_fit_settings[name])
    again.fit(batch)
    assert again.perturb(batch).tobytes() == fitted[name].perturb(batch).tobytes()


@pytest.mark.parametrize("name", ["random", "ar", "em"])
def test_other_seed_or_key_changes_the_noise(name, fitted, batch, tiny_fit_settings):
    base = fitted[name].perturb(batch)
    other = make_protector(name, BUDGET, seed=SEED + 1, **tiny_fit_settings[name])
    if name not in MODEL_FREE:
        other.load_state_dict(fitted[name].state_dict())  # same surrogate: only the PGD start differs
    assert other.perturb(batch).tobytes() != base.tobytes()
    renamed = SliceBatch(batch.images, batch.structures, [key + "x" for key in batch.keys], batch.eps_scale)
    assert fitted[name].perturb(renamed).tobytes() != base.tobytes()


@pytest.mark.parametrize("name", METHODS)
def test_global_rng_is_left_alone(name, batch, tiny_fit_settings):
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()
    protector = make_protector(name, BUDGET, seed=SEED, **tiny_fit_settings[name])
    protector.fit(batch)
    protector.perturb(batch)
    assert torch.equal(torch.get_rng_state(), torch_state)
    after = np.random.get_state()
    assert after[0] == numpy_state[0] and np.array_equal(after[1], numpy_state[1]) and after[2:] == numpy_state[2:]


@pytest.mark.parametrize("name", METHODS)
def test_state_dict_round_trip(name, fitted, batch):
    """Weights saved with torch.save load with weights_only=True into a protector rebuilt from its JSON config."""
    source = fitted[name]
    buffer = io.BytesIO()
    torch.save(source.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    config = json.loads(json.dumps(source.config()))
    rebuilt = make_protector(config["method"], Budget(**config["budget"]), seed=config["seed"], **config["settings"])
    assert rebuilt.config() == source.config()
    if state:
        rebuilt.load_state_dict(state)
    else:
        assert name in MODEL_FREE
    assert rebuilt.perturb(batch).tobytes() == source.perturb(batch).tobytes()


def test_umed_state_holds_generators_only(fitted):
    state = fitted["umed"].state_dict()
    assert state and all(key.split(".")[0] in ("contour", "texture") for key in state)
    assert all(isinstance(value, torch.Tensor) for value in state.values())


def test_salm_changes_at_most_k_voxels(fitted, batch):
    delta = fitted["salm"].perturb(batch)
    support = allowed(batch)
    for index in range(len(batch.keys)):
        k = max(1, math.floor(0.1 * support[index].sum())) if support[index].any() else 0
        assert 0 < np.count_nonzero(delta[index]) <= k or k == 0


def _class_patterns(name: str, fitted) -> tuple[np.ndarray, np.ndarray]:
    """The same image protected twice: once with a structure covering voxels V, once with V in the outer band."""
    shape = (32, 32)
    image = np.full((1, *shape), 0.5, dtype=np.float32)
    roi = np.zeros((1, *shape), dtype=bool)
    roi[0, 4:28, 4:16] = True  # V = columns 16..17 are in the ROI's outer band
    other = np.zeros_like(roi)
    other[0, 4:28, 18:28] = True  # here columns 16..17 are in the outer band of a structure on the right
    wide = np.zeros_like(roi)
    wide[0, 4:28, 4:28] = True  # here columns 16..17 are inside the structure
    protector = fitted[name]
    as_background = protector.perturb(SliceBatch(image, roi, ["p/0"]))[0, 8:24, 16:18]
    as_roi = protector.perturb(SliceBatch(image, wide, ["p/0"]))[0, 8:24, 16:18]
    assert protector.perturb(SliceBatch(image, other, ["p/0"]))[0, 8:24, 16:18].any()
    return as_roi, as_background


@pytest.mark.parametrize("name", ["lsp", "ar"])
def test_roi_and_background_patterns_differ(name, fitted):
    as_roi, as_background = _class_patterns(name, fitted)
    assert as_roi.any() and as_background.any()
    assert np.mean(as_roi != as_background) > 0.2


def _ar_residual(noise: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
    """``x[i, j] - sum b * window``: zero where ``noise`` follows the AR process ``coefficients``."""
    window = coefficients.copy()
    window[2, 2] = -1.0
    # correlate centres the window: output (i - 1, j - 1) is the window ending at (i, j); keep full windows only
    return ndimage.correlate(noise.astype(np.float64), window, mode="constant")[1:-1, 1:-1]


def test_ar_noise_follows_its_class_process(fitted):
    """Inside a tile the ROI noise satisfies the ROI recurrence exactly, and the background noise its own."""
    protector = fitted["ar"]
    image = np.full((1, 16, 16), 0.5, dtype=np.float32)
    delta = protector.perturb(SliceBatch(image, np.ones((1, 16, 16), dtype=bool), ["p/0"]))[0] / BUDGET.eps_max
    roi_process, background_process = protector.coefficients
    assert np.abs(_ar_residual(delta, roi_process)).max() < 1e-5
    assert np.abs(_ar_residual(delta, background_process)).max() > 1e-2
    background = protector.noise("p/0", (16, 16))[1]
    assert np.abs(_ar_residual(background, background_process)).max() < 1e-5


def test_lsp_is_patchwise_constant_plus_minus_eps(fitted):
    image = np.full((1, 32, 32), 0.5, dtype=np.float32)
    fg = np.ones((1, 32, 32), dtype=bool)
    delta = fitted["lsp"].perturb(SliceBatch(image, fg, ["p/0"]))[0]
    assert set(np.unique(np.abs(delta))) == {np.float32(BUDGET.eps_max)}
    blocks = delta.reshape(8, 4, 8, 4)  # patch 4
    assert np.all(blocks == blocks[:, :1, :, :1])


def test_eps_scale_zero_gives_no_change(fitted, batch):
    zero = SliceBatch(batch.images, batch.structures, batch.keys, np.zeros(len(batch.keys), dtype=np.float32))
    for name in METHODS:
        assert not fitted[name].perturb(zero).any(), name


@pytest.mark.parametrize("name", sorted(set(METHODS) - MODEL_FREE))
def test_perturb_before_fit_is_a_config_error(name, batch):
    with pytest.raises(ConfigError, match="not fitted"):
        make_protector(name, BUDGET, seed=0).perturb(batch)


def test_make_protector_errors():
    with pytest.raises(ConfigError, match=r"method: unknown name 'nope' \(expected one of umed, em"):
        make_protector("nope", BUDGET)
    with pytest.raises(ConfigError, match="unknown setting"):
        make_protector("umed", BUDGET, stpes=3)
    with pytest.raises(ConfigError, match="'k_fraction'"):
        make_protector("salm", BUDGET, k_fraction=0.0)
    with pytest.raises(ConfigError, match="'pattern_init'"):
        make_protector("umed", BUDGET, pattern_init="stripes")
    with pytest.raises(ConfigError, match="'flips'"):
        make_protector("em", BUDGET, flips="yes")
    with pytest.raises(ConfigError, match="eps_contour"):
        make_protector("random", Budget(eps_contour=0.0))
    assert make_protector("LSP", BUDGET).name == "lsp"


def test_settings_are_resolved_and_json_native():
    protector = make_protector("umed", BUDGET, lr=1, steps=5.0)
    assert protector.settings["lr"] == 1.0 and isinstance(protector.settings["lr"], float)
    assert protector.settings["steps"] == 5 and isinstance(protector.settings["steps"], int)
    assert json.loads(json.dumps(protector.config()))["settings"] == protector.settings


def test_umed_options_pattern_saturation_epochs_reinit(batch, tiny_fit_settings):
    calls = []
    settings = {
        **tiny_fit_settings["umed"],
        "steps": 1,
        "epochs": 1.0,
        "saturation": 1.0,
        "surrogate_reinit_every": 1,
        "surrogate_warmup": 1,
        "generator_input": "image",
    }
    for pattern in ("sign", "checker", "patches"):
        protector = make_protector("umed", BUDGET, seed=1, pattern_init=pattern, **settings)
        log = protector.fit(batch, progress=lambda text, done, total: calls.append((done, total)))
        assert log["steps"] == 2  # ceil(1 epoch * 4 slices / batch 2)
        assert log["surrogate_reinits"] == 1
        delta = protector.perturb(batch)
        assert np.all(delta[~allowed(batch)] == 0)
        assert np.all(np.abs(delta) <= np.float32(BUDGET.eps_max) * batch.eps_scale[:, None, None])
    assert calls[-1] == (2, 2) and len(calls) == 6


def test_sign_pattern_init_spends_the_budget(batch, tiny_fit_settings):
    """With pattern_init='sign' and a large gain the untrained generators already give a label-aligned pattern."""
    settings = {**tiny_fit_settings["umed"], "steps": 0, "pattern_init": "sign", "pattern_gain": 20.0}
    protector = make_protector("umed", BUDGET, seed=1, **settings)
    protector.fit(batch)
    delta = protector.perturb(batch)
    band = regions.contour_band(batch.structures, BUDGET.band_width, batch=True)
    outside = band & ~batch.structures
    assert np.all(delta[batch.structures & (batch.eps_scale[:, None, None] > 0)] >= 0)
    assert np.all(delta[outside] <= 0)
    eps_band = np.float32(BUDGET.eps_contour) * np.broadcast_to(batch.eps_scale[:, None, None], delta.shape)
    np.testing.assert_allclose(np.abs(delta[band]), eps_band[band], rtol=1e-4)
