"""Atomic writes: a reader never sees a half-written case.

Every output is first written under a hidden temporary name *in the target folder* (so the final rename stays on
one file system) and then moved into place with :func:`os.replace` (files) or a rename (DICOM series folders). If
writing fails, the temporary file or folder is removed and an existing target is left untouched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from umed.errors import OutputError

__all__ = ["atomic_file", "atomic_dir"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _make_parent(target: Path) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"{target.parent}: cannot create the output folder ({error.strerror or error})") from error


@contextlib.contextmanager
def atomic_file(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it replaces ``target``, on error it is removed.

    The final file gets the usual permissions (``0o666`` minus the umask), not the ``0o600`` of a temporary file.

    Args:
        target: the file to write.

    Yields:
        A path in ``target``'s folder to write the content to.

    Raises:
        OutputError: the folder cannot be created or the file cannot be moved into place.

    Example:
        >>> with atomic_file(Path("out/case.png")) as temp:  # doctest: +SKIP
        ...     temp.write_bytes(data)
    """
    target = Path(target)
    _make_parent(target)
    try:
        handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as error:
        raise OutputError(f"{target.parent}: cannot write in the output folder ({error.strerror or error})") from error
    os.close(handle)
    temp = Path(name)
    try:
        yield temp
        os.chmod(temp, 0o666 & ~_umask())
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; on success it takes ``target``'s place, on error it is removed.

    An existing ``target`` folder is first moved aside, then deleted once the new folder is in place (a folder
    cannot be replaced in one step), so at every moment ``target`` is either the old or the new complete folder,
    apart from the instant between the two renames.

    Args:
        target: the folder to write (e.g. a DICOM series).

    Yields:
        An empty folder in ``target``'s parent to fill.

    Raises:
        OutputError: the parent cannot be created, or ``target`` exists and is a file.
    """
    target = Path(target)
    _make_parent(target)
    if target.exists() and not target.is_dir():
        raise OutputError(f"{target}: cannot write a folder over a file (expected a folder, got a file)")
    try:
        temp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    except OSError as error:
        raise OutputError(f"{target.parent}: cannot write in the output folder ({error.strerror or error})") from error
    old: Path | None = None
    try:
        yield temp
        os.chmod(temp, 0o777 & ~_umask())
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            os.replace(target, old / target.name)
        os.replace(temp, target)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        if old is not None and (old / target.name).exists() and not target.exists():
            os.replace(old / target.name, target)  # put the previous version back
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
