"""Atomic writes: a reader never sees a half-written case.

Every output is first written under a hidden temporary name *in the target folder* (so the final rename stays on
one file system) and then moved into place with :func:`os.replace` (files) or a rename (DICOM series folders). If
writing fails, the temporary file or folder is removed and an existing target is left untouched. A process killed
while writing (SIGKILL, power loss) leaves its hidden ``.NAME.XXXXXXXX.tmp`` behind: :func:`sweep_temporaries`
removes such leftovers (``umed protect`` calls it on OUT at the start, under the run's lock).

File modes: a written file gets ``0o666`` minus the umask (``0644`` with the usual umask 022), folders ``0o777``
minus the umask; ``mode=`` asks for a stricter one (``umed protect`` passes the input file's mode when it is
stricter than 0644, so a private input never becomes a world-readable output).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from umed.errors import OutputError, UmedError

__all__ = ["atomic_file", "atomic_dir", "write_bytes_atomic", "write_json_atomic", "copy_atomic", "sweep_temporaries",
           "output_mode"]

_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.(tmp|old)$")  # what mkstemp/mkdtemp below name their files


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _make_parent(target: Path) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"{target.parent}: cannot create the output folder ({error.strerror or error})") from error


def output_mode(*sources: Path) -> int:
    """The mode for outputs derived from ``sources``: ``0o666`` minus the umask, and no bit the sources lack."""
    mode = 0o666 & ~_umask()
    for source in sources:
        with contextlib.suppress(OSError):
            mode &= os.stat(source).st_mode | 0o200  # the owner must still be able to rewrite it
    return mode


def _write_error(target: Path, error: OSError) -> OutputError:
    return OutputError(f"{target}: cannot write the output ({error.strerror or error})")


@contextlib.contextmanager
def atomic_file(target: Path, *, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it replaces ``target``, on error it is removed.

    The final file gets the usual permissions (``0o666`` minus the umask), not the ``0o600`` of a temporary file.

    Args:
        target: the file to write.
        mode: the final file's mode (default ``0o666`` minus the umask).

    Yields:
        A path in ``target``'s folder to write the content to.

    Raises:
        OutputError: the folder cannot be created, or writing or moving the file into place fails (full disk,
            read-only file system, permission).

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
        os.chmod(temp, (0o666 & ~_umask()) if mode is None else mode)
        os.replace(temp, target)
    except UmedError:
        temp.unlink(missing_ok=True)
        raise
    except OSError as error:
        temp.unlink(missing_ok=True)
        raise _write_error(target, error) from error
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(target: Path, *, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; on success it takes ``target``'s place, on error it is removed.

    An existing ``target`` folder is first moved aside, then deleted once the new folder is in place (a folder
    cannot be replaced in one step), so at every moment ``target`` is either the old or the new complete folder,
    apart from the instant between the two renames.

    Args:
        target: the folder to write (e.g. a DICOM series).
        mode: the mode of the files in it (default ``0o666`` minus the umask).

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
        for file in temp.rglob("*"):
            if file.is_file():
                os.chmod(file, (0o666 & ~_umask()) if mode is None else mode)
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            os.replace(target, old / target.name)
        os.replace(temp, target)
    except BaseException as error:
        shutil.rmtree(temp, ignore_errors=True)
        if old is not None and (old / target.name).exists() and not target.exists():
            os.replace(old / target.name, target)  # put the previous version back
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        if isinstance(error, OSError) and not isinstance(error, UmedError):
            raise _write_error(target, error) from error
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_bytes_atomic(data: bytes, target: Path, *, mode: int | None = None) -> Path:
    """Write ``data`` to ``target`` atomically (see :func:`atomic_file`); returns ``target``."""
    with atomic_file(target, mode=mode) as temp:
        temp.write_bytes(data)
    return Path(target)


def write_json_atomic(data: Any, target: Path, *, mode: int | None = None) -> Path:
    """Write ``data`` as indented JSON (non-JSON values as ``str``) atomically; returns ``target``."""
    text = json.dumps(data, indent=2, sort_keys=False, default=str) + "\n"
    return write_bytes_atomic(text.encode("utf-8"), target, mode=mode)


def copy_atomic(source: Path, target: Path, *, mode: int | None = None) -> Path:
    """Copy a file or a DICOM series folder byte for byte to ``target``, atomically; returns ``target``."""
    source = Path(source)
    if source.is_dir():
        with atomic_dir(target, mode=mode) as temp:
            shutil.copytree(source, temp, dirs_exist_ok=True)
    else:
        with atomic_file(target, mode=mode) as temp:
            shutil.copyfile(source, temp)
    return Path(target)


def sweep_temporaries(folder: Path) -> list[Path]:
    """Remove the hidden temporary files and folders an interrupted (killed) writer left under ``folder``.

    Only names of the form this module creates (``.NAME.XXXXXXXX.tmp`` / ``.old``) are removed. Call it only while
    no other writer uses ``folder`` (``umed protect`` holds OUT's lock).

    Returns:
        The removed paths.
    """
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for path in sorted(folder.rglob(".*"), key=lambda p: len(p.parts), reverse=True):
        if _TEMPORARY.match(path.name) and (path.exists() or path.is_symlink()):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    return removed
