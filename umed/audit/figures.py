"""The audit report's figures (PNG, written atomically): example slices with their perturbation, learning curves,
and the Dice under the three selection rules. matplotlib's object API (``matplotlib.figure.Figure``), never pyplot's
global state.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from umed.audit.records import AuditReport
from umed.audit.selection import RULES, ema
from umed.io.atomic import atomic_file

__all__ = ["figure_curves", "figure_dice", "figure_examples"]


def _save_figure(fig: Any, path: Path) -> None:
    with atomic_file(path) as temp:
        fig.savefig(temp, format="png", dpi=110, bbox_inches="tight")


def _show(image: np.ndarray, ndim: int) -> tuple[np.ndarray, str]:
    """Volumes' slices are (X, Y): show them transposed with the origin at the bottom, as radiology viewers do."""
    return (image.T, "lower") if ndim == 3 else (image, "upper")


def figure_examples(report: AuditReport, path: Path) -> bool:
    from matplotlib.figure import Figure

    examples = report.examples
    if not examples:
        return False
    ndim = int(report.data.get("ndim", 3))
    fig = Figure(figsize=(17.5, 3.2 * len(examples)))
    axes = fig.subplots(len(examples), 5, squeeze=False, gridspec_kw={"wspace": 0.35})
    for row, example in zip(axes, examples):
        delta = (example.protected.astype(np.float64) - example.clean) * 255.0
        limit = float(np.abs(delta).max()) or 1.0
        clean, origin = _show(example.clean, ndim)
        protected, _ = _show(example.protected, ndim)
        change, _ = _show(delta, ndim)
        structure, _ = _show(example.structure.astype(float), ndim)
        where = f"{example.case_id}" + (f", slice {example.index}" if ndim == 3 else "")
        row[0].imshow(clean, cmap="gray", vmin=0, vmax=1, origin=origin)
        row[0].set_title(f"clean ({where})", fontsize=9)
        shown = row[1].imshow(change, cmap="RdBu_r", vmin=-limit, vmax=limit, origin=origin)
        row[1].set_title(f"perturbation, amplified (scale +-{limit:.1f}/255)", fontsize=9)
        fig.colorbar(shown, ax=row[1], fraction=0.046, pad=0.04).set_label("change (/255)", fontsize=8)
        row[2].imshow(protected, cmap="gray", vmin=0, vmax=1, origin=origin)
        row[2].set_title("protected", fontsize=9)
        row[3].imshow(protected, cmap="gray", vmin=0, vmax=1, origin=origin)
        if structure.any():
            row[3].contour(structure, levels=[0.5], colors="yellow", linewidths=0.8, origin=origin)
        row[3].set_title("protected + structure contour", fontsize=9)
        box = _zoom_box(change != 0 if np.any(change) else structure > 0)
        row[4].imshow(change[box], cmap="RdBu_r", vmin=-limit, vmax=limit, origin=origin, interpolation="nearest")
        row[4].set_title("perturbation, zoomed (1 pixel = 1 voxel)", fontsize=9)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    _save_figure(fig, path)
    return True


def _zoom_box(mask: np.ndarray, margin: int = 6, most: int = 64) -> tuple[slice, slice]:
    """A window of at most ``most`` pixels per side around the centre of ``mask`` (the whole image when empty), so
    that a pattern of single voxels is visible."""
    if not mask.any():
        return (slice(None), slice(None))
    where = np.argwhere(mask)
    low, high = where.min(axis=0) - margin, where.max(axis=0) + margin + 1
    centre = (low + high) // 2
    half = np.minimum((high - low) // 2, most // 2)
    start = np.clip(centre - half, 0, None)
    stop = np.minimum(centre + half, mask.shape)
    return (slice(int(start[0]), int(stop[0])), slice(int(start[1]), int(stop[1])))


def figure_curves(report: AuditReport, path: Path) -> bool:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    runs = report.runs
    if not runs:
        return False
    cols = min(3, len(runs))
    rows = math.ceil(len(runs) / cols)
    fig = Figure(figsize=(4.6 * cols, 3.4 * rows))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, run in zip(axes, runs):
        epochs = np.arange(1, run.clean.epochs + 1)
        ax.plot(epochs, run.clean.test_dice, "o-", color="tab:blue", label="trained on clean", markersize=3)
        ax.plot(epochs, run.protected.test_dice, "o-", color="tab:red", label="trained on protected", markersize=3)
        if run.clean_half is not None:
            ax.plot(
                epochs,
                run.clean_half.test_dice,
                "o-",
                color="tab:green",
                label="trained on the clean half",
                markersize=3,
            )
        for vr, color in ((run.clean, "tab:blue"), (run.protected, "tab:red")):
            if vr.val_dice:
                ax.plot(epochs, ema(vr.val_dice), ":", color=color, linewidth=1)
                ax.plot([vr.epoch("nnunet")], [vr.dice("nnunet")], "*", color=color, markersize=10)
        ax.axhline(report.floor.dice, color="gray", linestyle=":", label="threshold floor")
        loss_ax = ax.twinx()
        loss_ax.plot(epochs, run.clean.train_loss, "--", color="tab:blue", alpha=0.4, linewidth=1)
        loss_ax.plot(epochs, run.protected.train_loss, "--", color="tab:red", alpha=0.4, linewidth=1)
        loss_ax.set_ylabel("training loss (dashed)", fontsize=8)
        ax.set_ylim(0, 1)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("clean-test Dice")
        ax.set_title(f"{run.victim} / {run.defense} (dotted: validation EMA; star: nnU-Net's pick)", fontsize=8)
        ax.legend(fontsize=7, loc="lower right")
    for ax in axes[len(runs) :]:
        ax.set_visible(False)
    fig.tight_layout()
    _save_figure(fig, path)
    return True


def figure_dice(report: AuditReport, path: Path) -> bool:
    from matplotlib.figure import Figure

    runs = report.runs
    if not runs:
        return False
    fig = Figure(figsize=(max(5.0, 1.6 * len(runs) + 2), 3.8))
    ax = fig.subplots()
    x = np.arange(len(runs))
    width = 0.13
    bars = [
        (f"{kind}, {rule}", [getattr(r, kind).dice(rule) for r in runs], color, alpha)
        for kind, color in (("clean", "tab:blue"), ("protected", "tab:red"))
        for rule, alpha in zip(RULES, (1.0, 0.45, 0.7))
    ]
    for k, (label, values, color, alpha) in enumerate(bars):
        values = [v if math.isfinite(v) else 0.0 for v in values]
        hatch = "//" if label.endswith("nnunet") else None
        ax.bar(x + (k - 2.5) * width, values, width, label=label, color=color, alpha=alpha, hatch=hatch)
    ax.axhline(
        report.floor.dice,
        color="black",
        linestyle="--",
        linewidth=1,
        label=f"threshold floor ({report.floor.dice:.2f})",
    )
    ax.set_xticks(x, [f"{r.victim}\n{r.defense}" for r in runs])
    ax.set_ylim(0, 1)
    ax.set_ylabel("clean-test Dice")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    _save_figure(fig, path)
    return True
