"""The ``umed`` command line: a thin Typer shell; every command lives in its own module and calls the Python API."""

from __future__ import annotations

import typer

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals can hold patient data
    add_completion=False,
    help="Unlearnable medical image segmentation datasets: protect, restore, audit, inspect.",
)


def _version(value: bool) -> None:
    if value:
        from umed import __version__

        print(f"umed {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", help="Print umed's version and exit.", callback=_version, is_eager=True
    ),
) -> None:
    """Unlearnable medical image segmentation datasets: protect, restore, audit, inspect."""


def _register() -> None:
    """Import each command module; each one adds its command to ``app``."""
    import importlib

    for module in ("info", "protect", "restore", "audit", "demo", "export", "configs", "verify"):
        try:
            importlib.import_module(f"umed.cli.{module}")
        except ModuleNotFoundError as error:  # a command not yet written
            if error.name != f"umed.cli.{module}":
                raise


_register()
