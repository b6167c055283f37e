"""Shared helpers for the issue-5 research experiments (standalone: nibabel + monai + numpy only).

Protocol (the audit's): BraTS volumes mapped to [0, 1] per volume by their 0.5/99.5 percentiles; protected volume
PSNR/SSIM per volume in that space (data_range 1); 2D axial slices (every slice with the structure plus as many
without, seeded), resampled 240 -> 128 (area for images, nearest for labels); MONAI victims, DiceCE, Adam 1e-3,
random flips, 15 epochs; Dice over all test slices jointly (best epoch and last epoch reported).

Clean volumes are cached as .npy under /tmp/umed_research (never in the repo).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

DATA = Path("/work/shared/data")
CACHE = Path("/tmp/umed_research")
CACHE.mkdir(parents=True, exist_ok=True)
RESULTS = Path(__file__).resolve().parents[1] / "results"
TRAIN = ["brats_2013_pat0003_1", "brats_2013_pat0004_1", "brats_2013_pat0005_1", "brats_2013_pat0006_1"]
TEST = ["brats_2013_pat0001_1", "brats_2013_pat0002_1"]
STRUCT = {"core": (1, 3, 4), "whole": (1, 2, 3, 4)}
MODALITY = {"t1c": "t1c", "flair": "volumes"}

torch.set_num_threads(int(os.environ.get("UMED_THREADS", "2")))


# ----------------------------------------------------------------------------------------------------------- data
def load_case(case: str, modality: str = "t1c") -> tuple[np.ndarray, np.ndarray]:
    """(normalised float32 volume in [0,1]-ish, int8 label volume), cached."""
    fi, fl = CACHE / f"{case}_{modality}.npy", CACHE / f"{case}_lab.npy"
    if not fi.exists():
        import nibabel as nib

        v = nib.load(str(DATA / "brats2015" / MODALITY[modality] / f"{case}.nii.gz")).get_fdata(dtype=np.float32)
        lo, hi = np.percentile(v, [0.5, 99.5])
        np.save(fi, ((v.astype(np.float64) - lo) / (hi - lo)).astype(np.float32))
        if not fl.exists():
            lab = nib.load(str(DATA / "brats2015" / "masks" / f"{case}.nii.gz")).get_fdata()
            np.save(fl, lab.astype(np.int8))
    return np.load(fi), np.load(fl)


def structure(lab: np.ndarray, target: str = "core") -> np.ndarray:
    return np.isin(lab, STRUCT[target])


def disk(r: int) -> np.ndarray:
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return (yy**2 + xx**2) <= r * r + 0.5


def regions2d(fg: np.ndarray, r: int) -> dict[str, np.ndarray]:
    """Per axial slice (2D, last axis): F, band = dilate(F,r) - erode(F,r), inner band, outer band, interior."""
    st = disk(r)[..., None] if fg.ndim == 3 else disk(r)  # 2D element applied slice-wise on volumes
    dil = ndi.binary_dilation(fg, st) if r > 0 else fg.copy()
    ero = ndi.binary_erosion(fg, st, border_value=0) if r > 0 else fg.copy()
    band = dil & ~ero
    return {"F": fg, "band": band, "inner": band & fg, "outer": band & ~fg, "interior": ero, "support": dil}


def select_slices(fg: np.ndarray, seed: int) -> np.ndarray:
    """Indices (last axis) of every slice with structure plus as many without (seeded)."""
    has = fg.any(axis=(0, 1))
    pos = np.where(has)[0]
    neg = np.where(~has)[0]
    rng = np.random.default_rng(seed)
    neg = rng.choice(neg, size=min(len(pos), len(neg)), replace=False)
    return np.sort(np.concatenate([pos, neg]))


def to128(img: np.ndarray, lab: np.ndarray, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """(H,W,N) native slices -> (N,1,size,size) float32 area-resampled images and (N,1,size,size) int64 labels."""
    ti = torch.from_numpy(np.ascontiguousarray(np.moveaxis(img, -1, 0)[:, None])).float()
    tl = torch.from_numpy(np.ascontiguousarray(np.moveaxis(lab, -1, 0)[:, None])).float()
    ti = F.interpolate(ti, size=(size, size), mode="area")
    tl = F.interpolate(tl, size=(size, size), mode="nearest")
    return ti.numpy(), tl.long().numpy()


def psnr(clean: np.ndarray, prot: np.ndarray) -> float:
    mse = float(np.mean((prot.astype(np.float64) - clean.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def ssim(clean: np.ndarray, prot: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    return float(structural_similarity(clean, prot, data_range=1.0))


def eps_for_psnr(n_total: int, energy_weights: np.ndarray, target_db: float) -> float:
    """Scale s so that perturbation s * w (w = unit pattern amplitudes on the support) hits target PSNR over n_total."""
    mse = 10 ** (-target_db / 10)
    return float(np.sqrt(mse * n_total / np.sum(energy_weights.astype(np.float64) ** 2)))


# ------------------------------------------------------------------------------------------------------- victims
def make_victim(name: str = "unet", in_ch: int = 1) -> torch.nn.Module:
    from monai.networks import nets

    if name == "unet":
        return nets.UNet(2, in_ch, 2, channels=(16, 32, 64, 128), strides=(2, 2, 2), num_res_units=2)
    if name == "basicunet":
        return nets.BasicUNet(2, in_ch, 2, features=(16, 16, 32, 64, 128, 16))
    if name == "segresnet":
        return nets.SegResNet(2, init_filters=16, in_channels=in_ch, out_channels=2)
    if name == "attunet":
        return nets.AttentionUnet(2, in_ch, 2, channels=(16, 32, 64, 128), strides=(2, 2, 2))
    raise ValueError(name)


def intensity_aug(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Victim intensity augmentation: each with p=0.5 per sample: gamma U(0.7,1.5) (on per-sample min-max),
    scale x*(1+U(-0.1,0.1)), Gaussian noise std 0.03."""
    b = x.shape[0]
    out = x.clone()
    for i in range(b):
        xi = out[i]
        if torch.rand(1, generator=g).item() < 0.5:
            lo, hi = xi.min(), xi.max()
            gam = 0.7 + 0.8 * torch.rand(1, generator=g).item()
            xi = ((xi - lo) / (hi - lo + 1e-8)).clamp(0, 1) ** gam * (hi - lo) + lo
        if torch.rand(1, generator=g).item() < 0.5:
            xi = xi * (1 + 0.2 * (torch.rand(1, generator=g).item() - 0.5))
        if torch.rand(1, generator=g).item() < 0.5:
            xi = xi + 0.03 * torch.randn(xi.shape, generator=g)
        out[i] = xi
    return out


def _fg_crops(xb: torch.Tensor, yb: torch.Tensor, crop: int, g: torch.Generator):
    H, W = xb.shape[-2:]
    xs, ys = [], []
    for k in range(len(xb)):
        fg = torch.nonzero(yb[k, 0] > 0)
        if k % 2 == 0 and len(fg):
            cy, cx = fg[int(torch.randint(0, len(fg), (1,), generator=g))].tolist()
            oy = min(max(cy - crop // 2, 0), H - crop)
            ox = min(max(cx - crop // 2, 0), W - crop)
        else:
            oy = int(torch.randint(0, H - crop + 1, (1,), generator=g))
            ox = int(torch.randint(0, W - crop + 1, (1,), generator=g))
        xs.append(xb[k, :, oy : oy + crop, ox : ox + crop])
        ys.append(yb[k, :, oy : oy + crop, ox : ox + crop])
    return torch.stack(xs), torch.stack(ys)


def dice_joint(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, bs: int = 32) -> float:
    model.eval()
    inter = ps = gs = 0
    with torch.no_grad():
        for i in range(0, len(x), bs):
            p = model(torch.from_numpy(x[i : i + bs])).argmax(1).numpy()
            g = y[i : i + bs, 0]
            inter += int(((p == 1) & (g == 1)).sum())
            ps += int((p == 1).sum())
            gs += int((g == 1).sum())
    return 2 * inter / max(ps + gs, 1)


def train_victim(
    xtr: np.ndarray,
    ytr: np.ndarray,
    evals: dict[str, tuple[np.ndarray, np.ndarray]],
    *,
    victim: str = "unet",
    epochs: int = 15,
    seed: int = 0,
    aug: bool = False,
    bs: int = 16,
    crop: int | None = None,
    fg_crops: bool = False,
    verbose: bool = True,
) -> dict:
    """Train a fresh victim on (xtr, ytr); Dice on each eval set after every epoch. Returns per-set curves."""
    from monai.losses import DiceCELoss

    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = make_victim(victim, xtr.shape[1])
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    curves: dict[str, list[float]] = {k: [] for k in evals}
    t0 = time.time()
    n = len(xtr)
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=g).numpy()
        for i in range(0, n, bs):
            idx = perm[i : i + bs]
            xb = torch.from_numpy(xtr[idx])
            yb = torch.from_numpy(ytr[idx])
            if crop is not None and fg_crops:  # per-sample crops, every other one centred on structure (nnU-Net-like)
                xb, yb = _fg_crops(xb, yb, crop, g)
            elif crop is not None:
                H, W = xb.shape[-2:]
                oy = int(torch.randint(0, H - crop + 1, (1,), generator=g))
                ox = int(torch.randint(0, W - crop + 1, (1,), generator=g))
                xb, yb = xb[..., oy : oy + crop, ox : ox + crop], yb[..., oy : oy + crop, ox : ox + crop]
            if torch.rand(1, generator=g).item() < 0.5:
                xb, yb = xb.flip(-1), yb.flip(-1)
            if torch.rand(1, generator=g).item() < 0.5:
                xb, yb = xb.flip(-2), yb.flip(-2)
            if aug:
                xb = intensity_aug(xb, g)
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
        for k, (xe, ye) in evals.items():
            curves[k].append(round(dice_joint(model, xe, ye), 4))
        if verbose:
            print(f"  ep{ep} loss {loss.item():.3f} " + " ".join(f"{k} {v[-1]:.3f}" for k, v in curves.items()),
                  f"{time.time() - t0:.0f}s", flush=True)
    res = {k: {"best": max(v), "last": v[-1], "curve": v} for k, v in curves.items()}
    res["train_seconds"] = round(time.time() - t0, 1)
    return res


# ------------------------------------------------------------------------------------------------- BraTS sets
def brats_slices(case: str, modality: str, target: str, seed: int, vol: np.ndarray | None = None, size: int = 128):
    """Native selected slices (H,W,N) of `vol` (default: clean) + labels, and their 128x128 versions."""
    img, lab = load_case(case, modality)
    fg = structure(lab, target)
    idx = select_slices(fg, seed)
    v = img if vol is None else vol
    x, y = to128(v[..., idx], fg[..., idx].astype(np.float32), size)
    return x, y


def brats_test_sets(modality: str, target: str, seed: int, size: int = 128) -> dict:
    xs, ys = zip(*[brats_slices(c, modality, target, seed, size=size) for c in TEST])
    return {"test": (np.concatenate(xs), np.concatenate(ys))}


def clean_baseline(modality: str, target: str, seed: int, victim: str = "unet", aug: bool = False,
                   epochs: int = 15) -> dict:
    """Clean-victim Dice with this seed (cached in a JSON under /tmp so each experiment need not retrain it)."""
    f = CACHE / f"clean_{modality}_{target}_{victim}_aug{int(aug)}_s{seed}_e{epochs}.json"
    if f.exists():
        return json.loads(f.read_text())
    xs, ys = zip(*[brats_slices(c, modality, target, seed) for c in TRAIN])
    res = train_victim(np.concatenate(xs), np.concatenate(ys), brats_test_sets(modality, target, seed),
                       victim=victim, seed=seed, aug=aug, epochs=epochs)
    f.write_text(json.dumps(res))
    return res


def write_result(name: str, record: dict) -> Path:
    p = RESULTS / f"research_{name}.json"
    p.write_text(json.dumps(record, indent=1, default=float))
    return p
