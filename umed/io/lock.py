"""One writer per output folder: a lock file held for the whole run.

:func:`output_lock` creates ``OUT/.umed.lock`` with ``O_CREAT | O_EXCL`` (atomic on local file systems), writes the
owner's PID, host name and start time into it, and removes it when the run ends, however it ends (errors, Ctrl-C).
A lock whose owner is gone (same host, PID no longer running) is stale and is taken over; a lock held by a live
process, or by another host (whose processes cannot be checked), refuses the second run with a clear message.

The folder itself is created when missing, and removed again at the end if the run left it empty (an early refusal
must not leave an empty OUT behind).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Iterator

from umed.errors import OutputError

__all__ = ["LOCK_NAME", "output_lock"]

LOCK_NAME = ".umed.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _owner(lock: Path) -> dict:
    try:
        owner = json.loads(lock.read_text())
        return owner if isinstance(owner, dict) else {}
    except (OSError, ValueError):
        return {}


def _create(lock: Path) -> bool:
    """Create the lock file; ``False`` when it already exists."""
    owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    try:
        handle = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    except OSError as error:
        raise OutputError(f"{lock.parent}: cannot write in the output folder ({error.strerror or error})") from error
    with os.fdopen(handle, "w") as stream:
        json.dump(owner, stream)
    return True


def _acquire(lock: Path) -> None:
    for _ in range(3):
        if _create(lock):
            return
        owner = _owner(lock)
        pid, host = owner.get("pid"), owner.get("host")
        if host == socket.gethostname() and isinstance(pid, int) and not _alive(pid):
            lock.unlink(missing_ok=True)  # stale: its run was killed
            continue
        if not owner and time.time() - _mtime(lock) > 60:
            lock.unlink(missing_ok=True)  # unreadable and old: a run killed while creating it
            continue
        raise OutputError(
            f"{lock.parent}: another umed run is writing here (pid {pid} on host {host}, started "
            f"{owner.get('started', '?')}); wait for it to finish, use another --out, or delete {lock} if that run "
            "is gone"
        )
    raise OutputError(f"{lock}: could not take the output folder's lock (expected to create it, it kept reappearing)")


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return time.time()


@contextlib.contextmanager
def output_lock(folder: Path) -> Iterator[Path]:
    """Hold ``folder``'s lock for the ``with`` block (creating ``folder`` if needed).

    Raises:
        OutputError: ``folder`` is a file or cannot be created or written, or another live run holds the lock.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder}: not a folder (expected an output folder, got a file)")
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"{folder}: cannot create the output folder ({error.strerror or error})") from error
    lock = folder / LOCK_NAME
    try:
        _acquire(lock)
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    try:
        yield lock
    finally:
        lock.unlink(missing_ok=True)
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only succeeds when the run left it empty
