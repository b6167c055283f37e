"""``umed configs``: list the settings umed ships (names for ``umed protect --config``)."""

from __future__ import annotations

from typing import Annotated

import typer

from umed.cli import app


@app.command("configs")
def configs(
    name: Annotated[str | None, typer.Argument(help="Print this shipped config's YAML instead of the list.")] = None,
) -> None:
    """List the shipped configs, one line each (the first is the default of ``umed protect``), or print one."""
    from umed import configs as shipped
    from umed.cli._console import console, user_errors

    if name is not None:
        with user_errors():
            console.print(shipped.text(name), end="", highlight=False, markup=False, soft_wrap=True)
        return
    width = max(len(item) for item in shipped.names())
    for item in shipped.names():
        suffix = "  (default)" if item == shipped.DEFAULT else ""
        console.print(
            f"{item:<{width}}  {shipped.describe(item)}{suffix}", highlight=False, markup=False, soft_wrap=True
        )
