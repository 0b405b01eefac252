"""Starting the sandbox's daemons inside its namespaces and ending them by pidfile.

A pidfile holds ``PID START_TIME`` (the kernel's start time of the process, from ``/proc/PID/stat``):
a PID the kernel has since given to someone else's process has another start time, so we never signal
a process we did not start.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path


def in_host(netns: str | None, hostname: str | None, argv: Sequence[str]) -> list[str]:
    """Wrap ``argv`` to run in network namespace ``netns`` with its own UTS ``hostname``.

    ``nsenter --net`` switches only the network namespace; ``ip netns exec`` would also remount /sys and
    hide the cgroup tree, which slurmd needs. Every wrapper ``exec``s, so the PID we get is the daemon's.
    """
    wrapped = list(argv)
    if hostname:
        wrapped = ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', hostname, *wrapped]
    if netns:
        wrapped = ["nsenter", f"--net=/run/netns/{netns}", *wrapped]
    return wrapped


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks, or None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else fields[19]


def read_pidfile(pidfile: Path) -> int | None:
    """The PID recorded in ``pidfile`` if that very process is still alive."""
    try:
        pid_s, started = pidfile.read_text().split()
        pid = int(pid_s)
    except (OSError, ValueError):
        return None
    return pid if start_time(pid) == started else None


def write_pidfile(pidfile: Path, pid: int) -> None:
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    pidfile.write_text(f"{pid} {start_time(pid)}\n")


def start(argv: Sequence[str], *, pidfile: Path, logfile: Path, env: dict | None = None) -> int:
    """Start a foreground daemon detached from us; return its PID (reusing a live one)."""
    alive = read_pidfile(pidfile)
    if alive:
        return alive
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with open(logfile, "ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            close_fds=True,
        )
    write_pidfile(pidfile, proc.pid)
    return proc.pid


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


def stop(pidfile: Path) -> None:
    pid = read_pidfile(pidfile)
    if pid:
        terminate(pid)
    pidfile.unlink(missing_ok=True)
