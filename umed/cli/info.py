"""``umed info``: describe and validate a dataset (thin shell over :func:`umed.info.dataset_info`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from umed.cli import app
from umed.cli._console import user_errors


def _dtype_text(item) -> str:
    """``int16 (x0.5 -10)`` when the stored values are scaled, else the dtype alone."""
    if not item.dtype:
        return "-"
    if (item.slope, item.intercept) in ((1.0, 0.0), (None, None)):
        return item.dtype
    return f"{item.dtype} (x{item.slope:g} {item.intercept:+g})"


@app.command("info")
def info(
    images: Annotated[
        Path,
        typer.Argument(
            help="Folder of images (NIfTI, DICOM series folders, PNG/TIFF), or an nnU-Net/Decathlon dataset."
        ),
    ],
    masks: Annotated[
        Path | None, typer.Option("--masks", "-m", help="Folder of label maps, paired by case name.")
    ] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the table as JSON to this file.")] = None,
) -> None:
    """Show each case's format, shape, spacing, dtype, intensity range and labels; report the cases that fail
    validation (exit code 1 if any does)."""
    import json

    from rich.table import Table

    from umed.cli._console import console, error_console, fail
    from umed.errors import UmedError
    from umed.info import dataset_info
    from umed.io import atomic_file

    with user_errors():
        infos = dataset_info(images, masks)
    table = Table(title=f"umed info: {images}")
    table.add_column("case", no_wrap=True)
    for column in ("format", "shape", "spacing (mm)", "dtype", "min", "max", "labels", "foreground %", "status"):
        table.add_column(column, no_wrap=True)
    for item in infos:
        table.add_row(
            item.case_id,
            item.format or "-",
            "x".join(str(n) for n in item.shape) if item.shape else "-",
            "x".join(f"{v:.3g}" for v in item.spacing) if item.spacing else "-",
            _dtype_text(item),
            f"{item.intensity_min:.4g}" if item.intensity_min is not None else "-",
            f"{item.intensity_max:.4g}" if item.intensity_max is not None else "-",
            ",".join(str(v) for v in item.labels) if item.labels is not None else "-",
            f"{100 * item.foreground_fraction:.3f}" if item.foreground_fraction is not None else "-",
            "[red]failed[/red]"
            if item.error
            else ("[yellow]warning[/yellow]" if item.warnings else "[green]ok[/green]"),
        )
    console.print(table)
    for item in infos:
        for warning in item.warnings:
            error_console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False, soft_wrap=True)
        if item.error:
            error_console.print(f"[red]error:[/red] {item.error}", highlight=False, soft_wrap=True)
    failed = [item for item in infos if item.error]
    console.print(f"{len(infos)} case(s), {len(failed)} failed", highlight=False)
    if json_path is not None:
        document = {
            "images": str(images),
            "masks": str(masks) if masks is not None else None,
            "n_cases": len(infos),
            "n_failed": len(failed),
            "cases": [item.to_dict() for item in infos],
        }
        try:
            with atomic_file(json_path) as temp:
                temp.write_text(json.dumps(document, indent=2) + "\n")
        except (UmedError, OSError) as error:
            fail(f"{json_path}: cannot write the JSON report ({error})")
            return
    if failed:
        raise typer.Exit(1)
