"""Terminal helpers shared by the commands: a rich progress bar behind umed's ``ProgressCallback``, error exits."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def _width(stream) -> int | None:
    """Terminal width on a terminal; when piped (logs, tests) wide enough for a table row, unless COLUMNS says."""
    import os

    if stream.isatty() or os.environ.get("COLUMNS"):
        return None
    return 160


console = Console(width=_width(sys.stdout))
error_console = Console(stderr=True, width=_width(sys.stderr))


@contextlib.contextmanager
def progress_callback() -> Iterator[Callable[[str, int, int], None]]:
    """Yield a ``callback(description, completed, total)`` that drives one rich task per description."""
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=error_console,
        transient=False,
        disable=not sys.stderr.isatty(),
    )
    tasks: dict[str, TaskID] = {}

    def update(description: str, completed: int, total: int) -> None:
        if description not in tasks:
            tasks[description] = progress.add_task(description, total=total)
        progress.update(tasks[description], completed=completed, total=total)

    with progress:
        yield update


def fail(message: str) -> None:
    """Print one error line on stderr (no traceback, no locals) and exit with status 1."""
    import typer

    error_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """The one place a command turns umed's errors into a message: a :class:`~umed.errors.UmedError` raised inside
    becomes one error line on stderr and exit status 1 (:func:`fail`)."""
    from umed.errors import UmedError

    try:
        yield
    except UmedError as error:
        fail(str(error))


def parse_names(text: str | None) -> tuple[str, ...] | None:
    """``"unet, segresnet"`` -> ``("unet", "segresnet")``; ``None`` stays ``None`` (option not given)."""
    if text is None:
        return None
    return tuple(part.strip() for part in text.split(",") if part.strip())


def parse_labels(text: str | None) -> tuple[int, ...] | None:
    """``"1,3,4"`` -> ``(1, 3, 4)``; ``None`` stays ``None``.

    Raises:
        typer.BadParameter: a part is not an integer.
    """
    import typer

    names = parse_names(text)
    if names is None:
        return None
    try:
        return tuple(int(part) for part in names)
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated integers such as 1,3,4 (got {text!r})") from None
