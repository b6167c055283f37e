"""``umed export-protector``: copy a trained protector into a small self-describing artefact folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from umed.cli import app
from umed.cli._console import user_errors


@app.command("export-protector")
def export_protector(
    protector: Annotated[Path, typer.Argument(help="protector.json written by umed protect (or its folder).")],
    to: Annotated[Path, typer.Option("--to", help="Folder to write protector.json (+ protector.pt) into.")],
) -> None:
    """Check that a protector loads (weights SHA-256 included) and write a copy for reuse elsewhere."""
    from umed.cli._console import console
    from umed.protect.protector_io import export_protector as export

    with user_errors():
        written = export(protector, to)
    console.print(f"exported {written}")
