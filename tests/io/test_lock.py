"""umed.io.lock: one run per output folder, stale locks of killed runs taken over, no empty OUT left behind."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from umed.errors import OutputError
from umed.io.lock import LOCK_NAME, output_lock

ROOT = Path(__file__).resolve().parents[2]


def _holder(out: Path) -> subprocess.Popen:
    """A real second process that takes OUT's lock and keeps it."""
    code = f"""
        import time
        from umed.io.lock import output_lock
        with output_lock({str(out)!r}):
            print("locked", flush=True)
            time.sleep(60)
    """
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "locked"
    return process


def test_second_run_is_refused_while_the_first_holds_the_lock(tmp_path: Path) -> None:
    out = tmp_path / "out"
    holder = _holder(out)
    try:
        with pytest.raises(OutputError, match=rf"another umed run is writing here \(pid {holder.pid} on host "):
            with output_lock(out):
                pass
    finally:
        holder.kill()
        holder.wait()


def test_lock_of_a_killed_run_is_stale_and_taken_over(tmp_path: Path) -> None:
    out = tmp_path / "out"
    holder = _holder(out)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert (out / LOCK_NAME).is_file()
    with output_lock(out) as lock:
        assert json.loads(lock.read_text())["pid"] != holder.pid
    assert not (out / LOCK_NAME).exists()


def test_lock_of_another_host_is_respected(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_NAME).write_text(json.dumps({"pid": 1, "host": socket.gethostname() + "-other", "started": "x"}))
    with pytest.raises(OutputError, match="-other"):
        with output_lock(out):
            pass


def test_lock_creates_out_and_removes_it_when_left_empty(tmp_path: Path) -> None:
    with output_lock(tmp_path / "new"):
        assert (tmp_path / "new").is_dir()
    assert not (tmp_path / "new").exists()
    with output_lock(tmp_path / "kept") as lock:
        (lock.parent / "result.txt").write_text("x")
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == ["result.txt"]
