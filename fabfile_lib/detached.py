"""The lab's background forward (``--detach``): start it, know whether it runs, stop it.

The process itself is ``forward_process.py``; it is started in a session of its own, logs to the lab's
forward log, and records its pid, start time and port in the lab's record. Only that recorded pid, checked
against its start time, is ever signalled.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from . import probes, python_child, state
from .errors import LabError
from .procs import alive, terminate
from .settings import LabSettings
from .state import LabRecord


def forward_alive(record: LabRecord) -> bool:
    """Whether the record's background forward runs: its pid, with the start time recorded for it."""
    return alive(record.forward_pid, record.forward_started)


def spawn_forward(settings: LabSettings, record: LabRecord) -> subprocess.Popen:
    """Start the background forward process now. It logs in (riding the master) while Jupyter starts, and
    opens the forwards as soon as the record says where Jupyter answers: ``lab.start --detach`` then ends
    a moment after Jupyter answers, not a whole process start later."""
    fd = state.open_log(settings.state_path, record.name)  # makes the state directory, 0700: the child's cwd
    try:
        return subprocess.Popen(
            python_child.argv("fabfile_lib.forward_process", record.name, os.path.abspath(settings.state_path)),
            stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, start_new_session=True, close_fds=True,
            cwd=os.path.abspath(settings.state_path), env=python_child.environment())
    finally:
        os.close(fd)


def start_detached(settings: LabSettings, record: LabRecord, timeout: float = 60,
                   proc: subprocess.Popen | None = None) -> LabRecord:
    """Hold the forwards in a background process recorded with the lab (``proc``, if one was spawned
    early); return once the URL answers."""
    if forward_alive(record):
        return record
    log = state.log_path(settings.state_path, record.name)
    proc = proc or spawn_forward(settings, record)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = state.load(settings.state_path, record.name)
        ours = current.forward_pid == proc.pid and current.forward_port
        if ours and probes.answers(current.forward_port):
            return current
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    if proc.poll() is None:
        proc.terminate()
        proc.wait(5)
    lines = log.read_text().strip().splitlines() if log.exists() else []
    errors = [ln.removeprefix("error: ") for ln in lines if ln.startswith("error: ")]
    if errors:
        raise LabError(f"the background forward could not start: {errors[-1]} (log: {log})")
    raise LabError(f"the background forward did not come up: {' | '.join(lines[-3:]) or 'no output'} (log: {log}).")


def forwarding_labs(state_dir: Path) -> list[str]:
    """The labs recorded in ``state_dir`` whose background forward runs."""
    return [name for name in state.names(state_dir) if forward_alive(state.load(state_dir, name))]


def end_forward_process(record: LabRecord) -> bool:
    """Stop the record's background forward (SIGTERM, then SIGKILL); True if one was running."""
    if not forward_alive(record):
        return False
    terminate(record.forward_pid, started=record.forward_started)
    return True


def stop_detached(settings: LabSettings, record: LabRecord) -> bool:
    """Stop the lab's background forward and forget it in the record; the job keeps running."""
    stopped = end_forward_process(record)
    state.update(settings.state_path, record.name, forward_pid=0, forward_started="", forward_port=0)
    return stopped

