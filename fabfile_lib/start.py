"""The whole start of a lab, as a library call: submit, wait, and what is kept or cancelled when it fails.

``lab.start`` (the task) and a team's own ``tasks.py`` call :func:`start`; it never prints. Its policy:

- a job that has not answered yet is cancelled -- nothing is lost, nothing left behind -- when the job
  ends, the wait times out, the caller is interrupted (Ctrl-C), or the mode cannot reach Jupyter here;
  ``lab.via: auto`` then tries the next mode (compute, login, reverse) that the login node's refusals so
  far leave possible, and remembers what worked;
- any other failure (the cluster or the connection, not the job) keeps the job and its record: a place
  in the queue is never given up, and ``wait`` goes on from there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from . import commands, lab, modes, via_memory
from .errors import JobEnded, LabError, ModeUnreachable, WaitTimeout
from .hops import Hops
from .settings import LabSettings
from .state import LabRecord


@dataclass(frozen=True)
class Started:
    """A lab whose Jupyter answers: its record and the settings it runs with; with ``detach``, the watcher
    was asked to hold it as soon as the job was submitted (``detached.start_detached`` waits for its URL)."""

    record: LabRecord
    settings: LabSettings
    detached: bool = False


@dataclass(frozen=True)
class StartEvents:
    """What :func:`start` reports while it works; each callback may be left out."""

    submitted: Callable[[LabRecord], None] | None = None  # a job was submitted for the lab
    queue: lab.Progress | None = None  # Slurm's answers while the job queues, and once when it runs
    next_mode: Callable[[LabRecord, LabError], None] | None = None  # a mode failed; its job is cancelled


def start(settings: LabSettings, hops: Hops, *, detach: bool = False, events: StartEvents | None = None) -> Started:
    """Submit the lab and wait until Jupyter answers, in ``settings.via`` (or, for ``auto``, each mode in
    turn, skipping those a refusal of the login node already rules out); a LabError of the failure's own
    kind, saying what was kept, otherwise."""
    events = events or StartEvents()
    tries = via_memory.candidates(settings)
    refused: frozenset[str] = frozenset()
    for i, mode in enumerate(tries):
        if mode not in modes.possible(refused):
            continue
        outcome = _in_mode(replace(settings, via=mode), hops, detach=detach, events=events)
        if isinstance(outcome, Started):
            via_memory.remember(settings, outcome.record.via)
            return replace(outcome, settings=lab.settings_for(outcome.record, state_dir=str(settings.state_path)))
        record, exc = outcome
        refused |= getattr(exc, "refused", frozenset())
        if not [m for m in tries[i + 1:] if m in modes.possible(refused)]:
            raise type(exc)(after_cancel(exc, record, settings)) from None
        if events.next_mode:
            events.next_mode(record, exc)
    raise AssertionError("unreachable: the last mode tried raises")


def _in_mode(settings: LabSettings, hops: Hops, *, detach: bool,
             events: StartEvents) -> Started | tuple[LabRecord, ModeUnreachable]:
    """Submit and wait in one mode: Started, or (the record, why) if the mode cannot reach Jupyter here (its
    job then cancelled)."""
    record = lab.submit(settings, hops)
    if events.submitted:
        events.submitted(record)
    if detach:  # the watcher rides the login while the job starts, and forwards as soon as Jupyter listens
        record = lab.request_hold(settings, record)
    try:
        ready = lab.wait(settings, record, hops, events.queue, handoff=detach)
        return Started(_answered(settings, ready, hops) if detach else ready, settings, detach)
    except (ModeUnreachable, JobEnded, WaitTimeout, KeyboardInterrupt) as exc:
        lab.cancel(settings, record, hops)  # it never answered: nothing is lost
        if isinstance(exc, ModeUnreachable):
            return record, exc
        kind = type(exc) if isinstance(exc, LabError) else LabError  # the kind sets the exit code
        raise kind(after_cancel(exc, record, settings)) from None
    except LabError as exc:
        raise type(exc)(f"{exc}; job {record.job_id} and its record are kept: `{commands.run('wait')} --name "
                        f"{record.name}` goes on, `{commands.run('cancel')} --name {record.name}` ends it.") from None


def _answered(settings: LabSettings, record: LabRecord, hops: Hops) -> LabRecord:
    """The record once the watcher's forward answers: one ssh for the wait and the hold. If it cannot, a
    probe along the lab's path says why, as the wait would have (a refusal, a mode that cannot reach)."""
    try:
        return lab.start_detached(settings, record)
    except WaitTimeout:
        raise
    except LabError as exc:
        raise lab.unreachable(hops, record, exc) from None


def after_cancel(exc: BaseException, record: LabRecord, settings: LabSettings) -> str:
    """What went wrong, and what was done about it: the job is cancelled and nothing is kept."""
    if isinstance(exc, KeyboardInterrupt):
        return f"interrupted: job {record.job_id} cancelled, nothing left behind."
    if isinstance(exc, WaitTimeout):
        return (f"{exc}; job {record.job_id} was cancelled and nothing kept: raise lab.wait_timeout (now "
                f"{settings.wait_timeout:.0f} s) and start again, or use `{commands.run('submit')}` then "
                f"`{commands.run('wait')}`.")
    if isinstance(exc, JobEnded):
        return f"{exc} (its files were removed; nothing kept)"
    return f"{exc} (job {record.job_id} cancelled, nothing kept)"
