"""One lab held by the watcher: wait until its Jupyter answers, then hold its forwards until the job ends,
the record stops asking, or the watcher ends.

It runs in a thread of the watcher (``watcher.py``) and talks to the tasks through the lab's record only:
``forward_pid``/``forward_started`` (the watcher), ``forward_port`` and ``forward_note`` while it holds;
on its own end, ``hold`` cleared and the reason in ``forward_note`` (``error: ...`` for a failure). Its
lines go to the lab's own forward log, never the token.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

from . import added_ports, modes, slurm, state
from .errors import LabError
from .forwards import Forward
from .forwards.added_forwards import AddedSource
from .forwards.holding import hold
from .forwards.lab_forward import node_link
from .forwards.openssh_forward import NodeLink
from .hops import Hops
from .procs import start_time

Say = Callable[[str], None]


@contextlib.contextmanager
def _lab_log(state_dir: Path, name: str) -> Iterator[Say]:
    """Lines appended to the lab's forward log (0600), each flushed as it is said."""
    fh = os.fdopen(state.open_log(state_dir, name), "a")

    def say(text: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            fh.write(f"{text}\n")
            fh.flush()

    try:
        yield say
    finally:
        fh.close()


def _asked(state_dir: Path, name: str, request: str) -> state.LabRecord | None:
    """The record, while it still asks for this very hold."""
    with contextlib.suppress(LabError):
        record = state.find(state_dir, name)
        return record if record and record.hold == request else None
    return None


def await_ready(state_dir: Path, name: str, request: str, stop: threading.Event,
                on_node: Callable[[state.LabRecord], None] | None = None) -> state.LabRecord | None:
    """The record once it says where Jupyter answers (``start --detach`` asks for the hold while the job is
    still starting); None if the lab is cancelled or stopped meanwhile, or never gets there. ``on_node``
    hears the record once, as soon as it names the job's node (Jupyter is starting there)."""
    deadline, seen, record = None, (), None
    while not stop.is_set():
        now_stamp = state.stamp(state_dir, name)
        if now_stamp != seen:  # written since the last look (or the first look): read it again
            seen, record = now_stamp, _asked(state_dir, name, request)
        if record is None:
            return None
        if record.reachable:
            return record
        if on_node and record.node_addr:
            on_node(record)
            on_node = None
        if deadline is None:
            deadline = time.monotonic() + float(record.settings.get("wait_timeout", 300)) + 30
        if time.monotonic() > deadline:
            return None
        # A stat of a small local file: often once the job runs (the start returns as soon as this hold's
        # forward answers), seldom while it queues, which may take hours.
        stop.wait(0.005 if record.node_addr else 0.25)
    return None


def hold_lab(state_dir: Path, name: str, request: str, stop: threading.Event) -> None:
    """Hold lab ``name``'s forwards for hold request ``request`` (the watcher's ``HoldLab``)."""
    with _lab_log(state_dir, name) as say, contextlib.ExitStack() as early:
        failure: LabError | None = None
        try:
            ready: dict = {}
            record = await_ready(state_dir, name, request, stop,
                                 on_node=lambda rec: ready.update(_log_in_early(state_dir, rec, early)))
            if record is None:
                return
            _hold(state_dir, record, request=request, stop=stop, say=say, **ready)
        except LabError as exc:
            failure = exc
        except Exception as exc:  # a bug of ours: said in the lab's log, with the details; other labs go on
            failure = LabError(f"internal error: {type(exc).__name__}: {exc} (please report)")
            say(traceback.format_exc())
        finally:
            if failure is not None:
                say(f"error: {failure}")
            _let_go(state_dir, name, request, failure, stopped=stop.is_set())


def _log_in_early(state_dir: Path, record: state.LabRecord, early: contextlib.ExitStack) -> dict:
    """While Jupyter starts on the node: the hops, and (OpenSSH, modes through the node) the link to the
    node its forward will ride, so that the forward is added the moment Jupyter listens. A failure here is
    the forward's own to meet and say, in its time."""
    settings = state.settings_of(record, state_dir=str(state_dir))
    try:
        hops = early.enter_context(Hops.for_lab(settings, record.via, record.login_host, interactive=False))
        if not (hops.openssh and modes.mode(record.via).through_node):
            return {"hops": hops}
        link = early.enter_context(node_link(record, hops))
    except LabError:
        return {}
    return {"hops": hops, "link": link}


def _hold(state_dir: Path, record: state.LabRecord, *, request: str, stop: threading.Event, say: Say,
          hops: Hops | None = None, link: NodeLink | None = None) -> None:
    settings = state.settings_of(record, state_dir=str(state_dir))
    me, started = os.getpid(), start_time(os.getpid()) or ""

    def on_ready(fwd: Forward) -> None:
        state.amend(state_dir, record.name, lambda r: dict(
            forward_pid=me, forward_started=started, forward_port=fwd.port, forward_note="")
            if r.hold == request else {})
        say(f"forwarding 127.0.0.1:{fwd.port} to {record.far} via {record.via}")

    def note(text: str) -> None:
        state.amend(state_dir, record.name, lambda r: dict(forward_note=text) if r.hold == request else {})

    def learnt(info: slurm.JobInfo) -> None:  # status reads the time left here instead of asking Slurm
        left = info.seconds_left if info.running else None
        ends = time.time() + left if left is not None else 0.0
        state.amend(state_dir, record.name, lambda r: dict(job_ends_at=ends, job_end=info.end)
                    if r.hold == request else {})

    hold(settings, record, on_ready, stop, log=say, interactive=False, note=note, learnt=learnt, hops=hops, link=link,
         added=_added_source(state_dir, record.name, request),
         jobs_learnt=lambda jobs: state.amend(state_dir, record.name, lambda r: dict(jobs=jobs) if r.hold == request
                                              else {}))


def _added_source(state_dir: Path, name: str, request: str) -> AddedSource:
    """The forwards the record asks to add (read at each tick: a small local file), and their fate."""
    def wanted() -> tuple[added_ports.Added, ...]:
        record = _asked(state_dir, name, request)
        return added_ports.from_record(record.added) if record else ()

    def report(to: str, fate: added_ports.State, note: str) -> None:
        state.amend(state_dir, name, lambda r: dict(added=added_ports.to_record(
            added_ports.with_state(added_ports.from_record(r.added), to, fate, note))) if r.hold == request else {})

    return AddedSource(wanted, report)


def _let_go(state_dir: Path, name: str, request: str, failure: LabError | None, stopped: bool) -> None:
    """The record once this hold has ended: no forward of ours any more; a hold that ended by itself (the job
    ended, or a failure) is asked for no longer, with why in ``forward_note`` -- and, for a failure, its
    kind, so the task that waits raises the same kind (``detached.start_detached``)."""
    def change(record: state.LabRecord) -> dict:
        if record.forward_pid != os.getpid() and record.hold != request:
            return {}  # another watcher's, or held anew meanwhile
        gone = dict(forward_pid=0, forward_started="")
        if record.hold == request and not stopped:
            gone.update(hold="", forward_note=record.forward_note)
        if record.hold == request and not stopped and failure is not None:
            gone.update(forward_note=f"error: {failure}", forward_error=type(failure).__name__,
                        forward_refused=",".join(sorted(getattr(failure, "refused", ()))))
        return gone

    state.amend(state_dir, name, change)
