"""Background forwards (``--detach``), as the tasks see them: ask the watcher to hold a lab, know whether it
does, ask it to let go.

One watcher process per state directory holds every lab asked for (``watcher.py``); it is started here
when a lab is asked for and none runs, and it ends by itself once nothing is held. A lab asks through its
record (``hold``); the watcher answers through it (``forward_pid``, ``forward_port``, ``forward_note``).
Labs are dropped by asking, never by signalling the process that holds the others too.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from pathlib import Path

from . import errors, probes, python_child, state, watcher
from .errors import LabError
from .procs import alive, start_time
from .settings import LabSettings
from .state import LabRecord

LET_GO_WITHIN = 15.0  # seconds a lab's forwards take to close once asked (an ssh ends within 5 s)


def forward_alive(record: LabRecord) -> bool:
    """Whether the record's background forwards run: the process that holds them, by pid and start time."""
    return alive(record.forward_pid, record.forward_started)


def watcher_pid(state_dir: Path) -> int:
    """The pid of the watcher of ``state_dir`` if one runs, else 0."""
    known = watcher.recorded(state_dir)
    return known[0] if known and alive(*known) else 0


def ensure_watcher(state_dir: Path) -> int:
    """The watcher's pid, starting it first if none runs. It starts in the (0700) state directory with the
    environment ``python_child`` allows, so nothing of the current directory is imported into it."""
    state_dir = Path(os.path.abspath(state_dir))
    state.make_dirs(state_dir)
    with watcher.watcher_lock(state_dir):
        running = watcher_pid(state_dir)
        if running:
            return running
        log = os.open(state.watcher_log_path(state_dir), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            proc = subprocess.Popen(python_child.argv("fabfile_lib.watcher", str(state_dir)),
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                                    close_fds=True, cwd=state_dir, env=python_child.environment())
        finally:
            os.close(log)
        state.write_private(state.watcher_path(state_dir),
                            json.dumps({"pid": proc.pid, "started": start_time(proc.pid) or ""}))
        return proc.pid


def request_hold(settings: LabSettings, record: LabRecord) -> LabRecord:
    """Ask the watcher to hold the lab's forwards from now on (while the job still starts, it waits for
    Jupyter, riding the login meanwhile); the record as asked."""
    asked = state.update(settings.state_path, record.name, hold=secrets.token_hex(4), forward_note="",
                         forward_error="", forward_refused="")  # its port is kept: the lab's URL stays the same
    if asked is None:
        raise LabError(f"lab {record.name!r} is no longer recorded.")
    ensure_watcher(settings.state_path)
    return asked


def start_detached(settings: LabSettings, record: LabRecord, timeout: float = 60) -> LabRecord:
    """Have the lab held in the background (asked anew unless a live watcher already holds or awaits it);
    return once its URL answers there."""
    current = state.load(settings.state_path, record.name)
    if not (current.hold and watcher_pid(settings.state_path)):
        current = request_hold(settings, current)
    request, deadline, restarted = current.hold, time.monotonic() + timeout, False
    # The watcher records its forward (pid and port) only once the app has answered through its listener: a
    # live forward recorded after this call began is proof enough; one that was live already is tried first.
    proven = not forward_alive(current)
    seen, watcher_seen = None, time.monotonic()
    while time.monotonic() < deadline:
        written = state.stamp(settings.state_path, record.name)
        if written != seen or not proven:  # the record is read again only once written (or to probe again)
            seen, current = written, state.load(settings.state_path, record.name)
            if current.hold != request:  # it ended by itself: why is in the note and the lab's log
                raise _why_not(settings, current)
            if forward_alive(current) and current.forward_port and (
                    proven or probes.answers(current.forward_port, current.app_spec)):
                return current
        if time.monotonic() - watcher_seen > 0.2:
            watcher_seen = time.monotonic()
            if not watcher_pid(settings.state_path):
                if restarted:
                    break
                ensure_watcher(settings.state_path)  # it was ending as we asked (told to end, or by itself)
                restarted = True
        # A stat of a small local file: the start ends moments after the watcher's URL answers.
        time.sleep(0.005 if proven else 0.05)
    stop_detached(settings, record)
    raise _why_not(settings, state.load(settings.state_path, record.name), within=timeout)


def failure(record: LabRecord) -> LabError | None:
    """The error that ended the watcher's hold of the lab, of its own kind (a refusal, a mode that cannot
    reach Jupyter, a login needed...), if one did."""
    if not record.forward_error:
        return None
    kind, text = errors.named(record.forward_error), record.forward_note.removeprefix("error: ")
    if issubclass(kind, errors.ForwardingRefused):
        return kind(text, frozenset(filter(None, record.forward_refused.split(","))))
    return kind(text)


def _why_not(settings: LabSettings, record: LabRecord, within: float = 0) -> LabError:
    log = state.log_path(settings.state_path, record.name)
    known = failure(record)
    if isinstance(known, errors.ModeUnreachable):
        return known  # the start's policy decides on its kind: another mode, or none
    if record.forward_note.startswith("error: "):
        note = record.forward_note.removeprefix("error: ")
        kind = type(known) if known else LabError
        return kind(f"the background forward could not start: {note} (log: {log})")
    lines = log.read_text().strip().splitlines()[-3:] if log.exists() else []
    late = f" within {within:.0f} s" if within else ""
    return LabError(f"the background forward did not come up{late}: {' | '.join(lines) or 'no output'} (log: {log}).")


def stop_detached(settings: LabSettings, record: LabRecord, within: float = LET_GO_WITHIN) -> bool:
    """Ask the watcher to drop the lab, and wait (at most ``within`` s) until its forwards are closed; True
    if they were held. The job keeps running; the record says no forward, and its port is forgotten."""
    before = state.find(settings.state_path, record.name) or record
    held = bool(before.hold) and forward_alive(before)
    state.update(settings.state_path, record.name, hold="")
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        now = state.find(settings.state_path, record.name)
        if now is None or not forward_alive(now):
            break
        time.sleep(0.05)
    state.update(settings.state_path, record.name, forward_pid=0, forward_started="", forward_port=0)
    return held


def forwarding_labs(state_dir: Path) -> list[str]:
    """The labs recorded in ``state_dir`` whose background forwards run."""
    return [name for name in state.names(state_dir) if forward_alive(state.load(state_dir, name))]
