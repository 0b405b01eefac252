"""Ending processes we started, safely: by PID *and* start time, so a recycled PID is never signalled."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def start_time(pid: int) -> str | None:
    """The process's start time (clock ticks from /proc; ``ps``'s lstart where there is no /proc, as on
    macOS), or None if it is gone or a zombie."""
    if pid <= 0:
        return None
    if not os.path.exists("/proc/self/stat"):
        return _ps_start_time(pid)
    try:  # a str, not a Path: a held forward looks every second, and pathlib would intern the pid
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else fields[19]


def _ps_start_time(pid: int) -> str | None:
    try:
        out = subprocess.run(["ps", "-o", "stat=,lstart=", "-p", str(pid)], capture_output=True, text=True,
                             timeout=5, check=False).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    state, _, started = out.partition(" ")
    return None if not out or state.startswith("Z") else " ".join(started.split())


def alive(pid: int, started: str) -> bool:
    """True if ``pid`` is still the very process that had start time ``started``."""
    return bool(pid) and bool(started) and start_time(pid) == started


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def terminate(pid: int, *, started: str | None = None, grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds, a process we started (checked by start time)."""
    started = started or start_time(pid)
    if started is None:
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap(pid)
        if start_time(pid) != started:
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    _reap(pid)


def end_child(proc: subprocess.Popen, *, terminate: bool = True, grace: float = 5.0) -> None:
    """End a child we started (SIGTERM unless it is already on its way out), and reap it; SIGKILL after
    ``grace`` seconds."""
    if terminate and proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def owns_listener(pid: int, port: int) -> bool | None:
    """Whether process ``pid`` holds the socket listening on 127.0.0.1:``port`` (Linux: /proc); None
    where that cannot be told."""
    try:
        table = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return None
    wanted = f"0100007F:{port:04X}"
    inodes = {f"socket:[{cols[9]}]" for cols in (ln.split() for ln in table)
              if len(cols) > 9 and cols[1] == wanted and cols[3] == "0A"}
    if not inodes:
        return False
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    for fd in fds:
        with contextlib.suppress(OSError):
            if os.readlink(fd) in inodes:
                return True
    return False


def _libc():
    """The C library, loaded once in the parent: a child between fork and exec must not load anything
    (another thread of the watcher may have held the loader's lock at the fork)."""
    try:
        return ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
    except OSError:
        return None


_LIBC = _libc()


def die_with_parent() -> None:
    """In a child before exec (Linux): end it when the thread that started it ends -- the watcher's thread
    of that lab, or the whole process, even by SIGKILL --, so a killed watcher never leaves its ssh holding
    the local port. Elsewhere: nothing."""
    if _LIBC is not None:
        with contextlib.suppress(AttributeError):
            _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
