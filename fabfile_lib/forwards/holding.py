"""The forwards to a running lab, and holding them: across dropped connections, until the job ends.

:func:`hold` keeps the forward of ``lab_forward.tunnel``: it reopens a dropped
connection on the same local port within site-friendly limits, waits for a login the user has to give,
watches the job, warns before its time limit, and returns once it has ended.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from .. import commands, idle_watch, lab_dir, master, modes, pacing, probes, slurm
from ..errors import ConnectError, JobEnded, LabError, ModeUnreachable, PromptNeeded, SchedulerError
from ..hops import Hops, choose_transport
from ..notify import notify
from ..settings import LabSettings
from ..state import LabRecord
from .added_forwards import AddedForwards, AddedSource, Sides
from .forward import Forward
from .job_watch import JobWatch
from .lab_forward import login_side, tunnel
from .lab_jobs import Jobs, JobsSeen, idle_note
from .openssh_forward import NodeLink
from .reconnect import Backoff
from .vigil import Learnt, Log, Note, Vigil

_log = logging.getLogger(__name__)

LOGIN_WAIT = 30 * 60  # how long a held forward waits for the user to log in again before it gives up

TICK = 1.0  # seconds between looks at a held forward's own liveness (its ssh, the master's pid)

READY_WITHIN = 15.0  # seconds a new forward has to answer end to end before it counts as not working


def hold(settings: LabSettings, record: LabRecord, on_ready: Callable[[Forward], None],
         stop: threading.Event, *, log: Log = _log.info, hops: Hops | None = None,
         interactive: bool = True, backoff: Backoff = Backoff(), note: Note | None = None,
         learnt: Learnt | None = None, link: NodeLink | None = None, added: AddedSource | None = None,
         jobs_learnt: Callable[[Jobs], None] | None = None) -> None:
    """Hold the forwards until ``stop`` is set or the job ends, warning before its time limit.

    A forward counts as up (``on_ready``) only once Jupyter has answered through our own listener. From
    then on the evidence that the lab works is that path itself: Jupyter's ``/api`` answering through the
    listener every ``pacing.PROBE_EVERY`` seconds, and the forward's own connection alive (its ssh, or
    the very master that carries it). Slurm is asked only when that evidence changes -- has the job
    ended, or is it the forward? -- and for the time limit, once and then every
    ``pacing.TIME_LIMIT_EVERY``. A dropped or silent forward is reopened on the same local port within
    the site-friendly limits of ``backoff``; a first attempt that fails is an error at once (a bad start
    is not a drop). ``hops``, if given, is used for the first attempt (no new login). ``note`` hears the
    forward's condition once per change, ``learnt`` each answer of Slurm about the running job. ``link``:
    a link to the node opened on ``hops`` while the job started, for the first attempt. ``added``: the
    forwards added to the lab (``fabfile-lab forward``), held on the same connection as its own.
    ``jobs_learnt`` hears the jobs the lab has started (``lab_jobs.py``) each time their list changes.
    """
    port = record.forward_port or record.local_port
    vigil = Vigil(JobWatch(record.name, record.job_id, log), log, note, learnt=learnt)
    if hops is not None and hops.pin != modes.mode(record.via).pin(record.login_host):
        hops = None  # not the login node this lab lives on
    if hops is None and link is not None:
        link.close()
        link = None
    failures, connected_once = 0, False
    failing_since: float | None = None
    waiting_since: float | None = None
    while not stop.is_set():
        current, hops = hops or Hops.for_lab(settings, record.via, record.login_host, interactive), None
        last_attempt = time.monotonic()
        try:
            with current:
                if modes.mode(record.via).pinned:
                    record = _current_endpoint(current, record)
                first_link, link = link, None
                with tunnel(record, current, port, link=first_link) as fwd:
                    port = fwd.port
                    if not _until_answering(current, record, fwd, vigil, stop):
                        return
                    failures, failing_since, connected_once, waiting_since = 0, None, True, None
                    on_ready(fwd)  # first: a start waits for it, not for the condition's note
                    vigil.condition("")
                    with _extras(added, current, record, fwd, log) as extras, contextlib.ExitStack() as stack:
                        seen = [stack.enter_context(r) for r in _readers(settings, current, record, log, jobs_learnt)]
                        if _held(current, record, fwd, vigil, stop, sync=functools.partial(_beside, extras, seen)):
                            return
        except JobEnded as exc:
            if not connected_once:
                raise
            vigil.condition(str(exc))
            return
        except PromptNeeded as exc:
            waiting_since = waiting_since or time.monotonic()
            if not connected_once or time.monotonic() - waiting_since > LOGIN_WAIT:
                raise
            vigil.condition(f"login needed: `{commands.run('login')}` ({exc})")
            _await_login(settings, stop, waiting_since + LOGIN_WAIT)
            continue
        except (LabError, OSError, EOFError, _ssh_exception()) as exc:
            # Any failure of the connection itself (SFTP and Paramiko raise their own) is a drop too.
            if not connected_once:
                raise exc if isinstance(exc, LabError) else ConnectError(f"{exc or type(exc).__name__}") from None
            failures += 1
            failing_since = failing_since or last_attempt
            if backoff.exhausted(time.monotonic() - failing_since):
                again = f"`{commands.run('tunnel')} --name {record.name}` to try again"
                raise ConnectError(f"{exc}; gave up after {backoff.give_up_after / 60:.0f} minutes of trying to "
                                   f"reconnect: {again}.") from None
            vigil.condition(f"forward down, reconnecting ({exc})")
            stop.wait(backoff.delay(failures, time.monotonic() - last_attempt))
            continue
        delay = backoff.delay(0, time.monotonic() - last_attempt)
        if delay and not stop.is_set():
            log(f"reconnecting in {delay:.0f} s (at most one login per {backoff.min_interval:.0f} s)")
            stop.wait(delay)


def _ssh_exception() -> type[Exception]:
    """Paramiko's SSHException where Paramiko is loaded (it carries this hold), else nothing new."""
    import sys

    paramiko = sys.modules.get("paramiko")
    return paramiko.SSHException if paramiko else OSError


def _current_endpoint(hops: Hops, record: LabRecord) -> LabRecord:
    """The record with where Jupyter's far end is now (a hop the job made again has a new port); JobEnded
    once the job's own end mark is there (its hop is gone for good)."""
    seen = lab_dir.look(hops, record.remote_dir)
    if seen.ended:
        raise JobEnded(f"job {record.job_id} has ended: `{commands.run('status')} --name {record.name}` says why.")
    runtime = seen.runtime
    if not runtime or not isinstance(runtime.get("port"), int):
        return record
    endpoint = modes.mode(record.via).endpoint(runtime, record.node_addr,
                                               lambda name: lab_dir.read(hops, record.remote_dir, name))
    if endpoint is None:
        raise ConnectError(f"the job's hop to login node {record.login_host or '?'} is down; it is being made again")
    return record.reaching(endpoint)


def _until_answering(hops: Hops, record: LabRecord, fwd: Forward, vigil: Vigil, stop: threading.Event) -> bool:
    """Wait until the app answers through the new forward's listener: True then; False if its job has
    ended meanwhile (said); a ConnectError if the job runs (or Slurm cannot tell) and the app does not."""
    deadline = time.monotonic() + READY_WITHIN
    refused, app = fwd.refused(), record.app_spec  # the app's declaration read once, not per probe
    while not stop.is_set():
        if probes.answers(fwd.port, app):
            return True
        if not fwd.alive() or time.monotonic() > deadline or fwd.refused() > refused:
            break  # a channel refused along a path that should be open: no point in waiting for it
        stop.wait(0.1)
    if stop.is_set():
        return True
    vigil.asking.now(time.monotonic())
    info = vigil.ask(hops, record)
    if info is not None and not info.active:
        vigil.ended(hops, record, info)
        return False
    if info is not None:
        vigil.learn(info, time.monotonic())
    raise ModeUnreachable(f"{record.app_title} not answering on the node: nothing answers through the forward to "
                          f"{record.node or 'the node'} (job {record.job_id} {info.state.lower() if info else 'runs'})")


def _extras(added: AddedSource | None, hops: Hops, record: LabRecord, fwd: Forward, log: Log) -> AddedForwards:
    """The lab's added forwards on this connection (none asked for: nothing to do at each tick)."""
    if added is None or fwd.add is None:
        return AddedForwards(AddedSource(lambda: (), lambda *_: None), None)
    sides = Sides(fwd.add, login_side(hops), record.node_addr, modes.mode(record.via).through_node)
    return AddedForwards(added, sides, log)


def _readers(settings: LabSettings, hops: Hops, record: LabRecord, log: Log,
             jobs_learnt: Callable[[Jobs], None] | None) -> list[JobsSeen]:
    """What a held lab reads from its directory beside the hold, each for whoever wants to hear of it: the
    jobs it started (``jobs_learnt``), and -- under lab.idle -- the job's note that lab.idle will end it soon
    (``idle_watch.py``), relayed to the forward's log and the desktop once per change."""
    def heard(text: str) -> None:
        if text:
            log(f"lab {record.name}: {text}")
            notify(f"{record.app_title} on the cluster", f"lab {record.name}: {text}.")

    readers = []
    if jobs_learnt:
        readers.append(JobsSeen(lambda: lab_dir.jobs(hops, record.remote_dir), jobs_learnt))
    if settings.idle_seconds:
        readers.append(JobsSeen(lambda: idle_note(lab_dir.read(hops, record.remote_dir, idle_watch.NOTE)), heard))
    return readers


def _beside(extras: AddedForwards, seen: list[JobsSeen]) -> None:
    """What a held lab does at each tick besides watching its forward: its added forwards, what it reads."""
    extras.sync()
    for each in seen:
        each.tick(time.monotonic())


def _held(hops: Hops, record: LabRecord, fwd: Forward, vigil: Vigil, stop: threading.Event, *,
          sync: Callable[[], None] = lambda: None) -> bool:
    """Watch a held forward and its job; True once the job has ended, False when the forward stopped
    working (its connection dropped, or Jupyter stopped answering through it while the job runs).

    The probe and Slurm run beside the watch, never in its way: over a hop that just died they would
    block until their timeouts, while the forward's own liveness check knows within seconds. ``sync``
    keeps the lab's added forwards equal to what its record asks, once per tick.
    """
    timeout, app = hops.settings.connect_timeout + 10, record.app_spec
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="held")
    try:
        probing: Future | None = None
        asking: Future | None = None
        doubt = False  # the lab's own path stopped answering: Slurm says whether the job ended
        confirm = False  # Slurm says the job runs while the path was silent: one more probe decides
        next_probe = time.monotonic() + pacing.PROBE_EVERY
        refused = fwd.refused()
        while not stop.wait(TICK):
            now = time.monotonic()
            if not fwd.alive():
                vigil.condition("forward down, reconnecting (the connection to the cluster dropped)")
                return False
            sync()
            if fwd.refused() > refused:  # Jupyter refused a connection: its job may have just ended
                refused, next_probe = fwd.refused(), now
            if probing is None and now >= next_probe:
                probing, next_probe = pool.submit(probes.answers, fwd.port, app), now + pacing.PROBE_EVERY
            if probing is not None and probing.done():
                answered, probing = probing.result(), None
                if answered:
                    doubt = confirm = False
                elif confirm:
                    vigil.condition(f"forward down, reconnecting ({record.app_title} stopped answering through "
                                    f"it; job {record.job_id} runs)")
                    return False
                elif not doubt:
                    doubt = True
                    vigil.asking.now(now)
            vigil.watch.tick(now)
            if asking is None and (doubt or vigil.watch.stale(now)) and vigil.asking.due(now):
                asking = pool.submit(slurm.query, hops.shell(), record.job_id, timeout)
            if asking is None or not asking.done():
                continue
            future, asking = asking, None
            try:
                info = future.result()
            except SchedulerError as exc:  # the scheduler could not be asked: that says nothing about the job
                vigil.log(f"{exc} (asking again in {vigil.asking.unanswered(now):.0f} s)")
                continue
            vigil.asking.answered(now)
            if not info.active:
                vigil.ended(hops, record, info)
                return True
            vigil.learn(info, now)
            if doubt:
                confirm, next_probe = True, now
        return False
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # a query stuck on a dead hop is not waited for


def _await_login(settings: LabSettings, stop: threading.Event, until: float) -> None:
    """Wait for the user to log in again. With OpenSSH that is a local look at the master's socket every
    2 s (no connection to the site, which may rate-limit logins); with Paramiko, one attempt per 10 s."""
    if choose_transport(settings) != "openssh":
        stop.wait(10)
        return
    plan = master.plan(settings)
    while not stop.wait(2) and time.monotonic() < until:
        if plan.check().alive:
            return
