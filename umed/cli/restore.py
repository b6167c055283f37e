"""``umed restore``: the original files of a release back, with its restore key (thin shell over
:func:`umed.protect.restore.restore_dataset`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from umed.cli import app
from umed.cli._console import user_errors


@app.command("restore")
def restore(
    protected: Annotated[Path, typer.Argument(help="The protected release (the OUT of `umed protect`).")],
    key: Annotated[Path, typer.Option("--key", "-k", help="The restore key `umed protect --restore-key` wrote.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the original files (new or empty).")],
) -> None:
    """Rebuild every case's original file, bit for bit (DICOM: the series' original files); nothing is written
    unless every case is restored."""
    from umed.cli._console import console
    from umed.protect.restore import restore_dataset

    with user_errors():
        summary = restore_dataset(protected, key, out)
    console.print(f"restored {len(summary.case_ids)} case(s) into {summary.out}", highlight=False, soft_wrap=True)
