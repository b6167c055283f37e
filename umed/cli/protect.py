"""``umed protect``: protect a folder of cases (thin shell over :func:`umed.protect.protect_dataset`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from umed.cli import app
from umed.cli._console import parse_labels, user_errors
from umed.protectors.registry import PROTECTORS

_Labels = Annotated[
    str | None,
    typer.Option("--labels", help="Labels that form the structure to protect, e.g. 1,3,4 (default: every label > 0)."),
]

_Overwrite = Annotated[
    bool,
    typer.Option("--overwrite", help="Replace what an earlier run with other settings wrote in OUT (default: refuse)."),
]

_Workers = Annotated[
    str,
    typer.Option(
        "--workers",
        "-j",
        help="Processes that apply the protector in parallel after the fit: a number (1: in this process) or auto "
        "(what the benchmark measured fastest: 1 for the shipped mark, one per core for a protector's generators).",
    ),
]


@app.command("protect")
def protect(
    volumes: Annotated[
        Path,
        typer.Argument(
            help="Folder of images (NIfTI, DICOM series folders, PNG/TIFF), or an nnU-Net/Decathlon dataset."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (must not be inside an input folder).")],
    masks: Annotated[
        Path | None, typer.Option("--masks", "-m", help="Folder of label maps, paired by case name.")
    ] = None,
    config: Annotated[
        str | None,
        typer.Option(
            "--config", "-c", help="A shipped config name (see `umed configs`; default: umed) or a YAML file."
        ),
    ] = None,
    protector: Annotated[
        Path | None,
        typer.Option("--protector", help="Apply this saved protector (protector.json) instead of training one."),
    ] = None,
    method: Annotated[str | None, typer.Option("--method", help=f"One of {', '.join(PROTECTORS.names())}.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Run seed: same seed, same bytes.")] = None,
    labels: _Labels = None,
    target_psnr: Annotated[
        float | None, typer.Option("--target-psnr", help="Per-case budget so each image keeps this PSNR (dB).")
    ] = None,
    overwrite: _Overwrite = False,
    workers: _Workers = "1",
    scheduler: Annotated[
        str | None,
        typer.Option("--scheduler", help="Apply on a running Dask cluster: tcp://HOST:PORT or a scheduler file."),
    ] = None,
    mark: Annotated[
        bool | None, typer.Option("--mark/--no-mark", help="Write the secret keyed mark of umed verify (default: on).")
    ] = None,
    private_share: Annotated[
        float | None,
        typer.Option(
            "--private-share", help="Keep this share of the cases private (not written) for umed verify cases."
        ),
    ] = None,
    key_out: Annotated[
        Path | None,
        typer.Option("--key-out", help="The secret key file (default: OUT.umed-key.json beside OUT; reused if there)."),
    ] = None,
    restore_key: Annotated[
        Path | None,
        typer.Option("--restore-key", help="Also write this secret file (outside OUT) for `umed restore`."),
    ] = None,
) -> None:
    """Train a protector on the dataset (or load one), protect every case and write OUT/ with a manifest."""
    from umed.cli._console import fail, progress_callback
    from umed.protect import protect_dataset
    from umed.settings import load_protect_config

    with user_errors():
        given: dict[str, Any] = {
            "images": volumes,
            "masks": masks,
            "out": out,
            "protector": protector,
            "method": method,
            "seed": seed,
        }
        given |= {"mark": mark, "key_out": key_out, "private_share": private_share}
        cfg = load_protect_config(config, structure_labels=parse_labels(labels), target_psnr=target_psnr, **given)
        with progress_callback() as update:
            summary = protect_dataset(
                cfg,
                progress=update,
                overwrite=overwrite,
                workers=_workers(workers),
                scheduler=scheduler,
                restore_key=restore_key,
            )
    print_protect_summary(summary, title=f"umed protect ({cfg.method}, seed {cfg.seed})")

    if summary.failed:
        fail(f"{len(summary.failed)} of {len(summary.results)} case(s) failed; the others were written")


def _workers(text: str) -> int | str:
    """``--workers``: ``auto`` or a whole number >= 1."""
    from umed.protect.engine import AUTO

    if text.strip().lower() == AUTO:
        return AUTO
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise typer.BadParameter(f"expected a number of processes >= 1 or auto (got {text!r})", param_hint="--workers")
    return value


def print_protect_summary(summary, *, title: str) -> None:
    """Print one row per case (status, budget, PSNR, ROI PSNR, SSIM, largest change) and the manifest path."""
    from rich.table import Table

    from umed.cli._console import console

    table = Table(title=title)
    for column in ("case", "status", "eps (/255)", "PSNR dB", "ROI PSNR dB", "SSIM", "max |change| (/255)"):
        table.add_column(column, justify="left" if column in ("case", "status") else "right", no_wrap=True)
    for result in summary.results:
        m = result.metrics
        eps = result.details.get("eps_255")
        table.add_row(
            result.case_id,
            result.status if result.status != "failed" else "[red]failed[/red]",
            f"{eps:.2f}" if eps is not None else "",
            f"{m['psnr']:.2f}" if "psnr" in m else "",
            f"{m['psnr_roi']:.2f}" if "psnr_roi" in m else "",
            f"{m['ssim']:.4f}" if "ssim" in m else "",
            f"{m['max_abs_change_255']:.2f}" if "max_abs_change_255" in m else "",
        )
    console.print(table)
    for result in summary.failed:
        console.print(f"[red]failed[/red] {result.case_id}: {result.error}", highlight=False, soft_wrap=True)
    console.print(f"manifest: {summary.manifest_path}", highlight=False, soft_wrap=True)
    if summary.key_path is not None:
        console.print(
            f"mark key: {summary.key_path} (secret: keep it, never release it; umed verify needs it)",
            highlight=False,
            soft_wrap=True,
        )
    if summary.restore_key is not None:
        console.print(f"restore key (keep it secret): {summary.restore_key}", highlight=False, soft_wrap=True)
