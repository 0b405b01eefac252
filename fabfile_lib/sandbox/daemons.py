"""Starting the sandbox's daemons inside its namespaces and ending them by pidfile.

A pidfile holds ``PID START_TIME`` (the kernel's start time of the process, from ``/proc/PID/stat``):
a PID the kernel has since given to someone else's process has another start time, so we never signal
a process we did not start.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from ..procs import alive, start_time, terminate


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


def read_pidfile(pidfile: Path) -> int | None:
    """The PID recorded in ``pidfile`` if that very process is still alive."""
    try:
        pid_s, started = pidfile.read_text().split()
        pid = int(pid_s)
    except (OSError, ValueError):
        return None
    return pid if alive(pid, started) else None


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


def stop(pidfile: Path) -> None:
    pid = read_pidfile(pidfile)
    if pid:
        terminate(pid)
    pidfile.unlink(missing_ok=True)
