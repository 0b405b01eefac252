"""The lab's life cycle: submit, wait until Jupyter answers, report, cancel.

Plain functions over :class:`~fabfile_lib.hops.Hops` and :class:`~fabfile_lib.state.LabRecord`; the
Invoke tasks in ``fabfile_lib.tasks.lab`` only parse options and print. The steps around them live in
modules of their own and are re-exported here, so a team's ``tasks.py`` needs only this one::

    with Hops(settings) as hops:
        record = lab.submit(settings, hops)
        record = lab.wait(settings, record, hops)
        with lab.tunnel(record, hops) as fwd:
            ...

The forwards: the ``forwards`` package; the background forwards: ``detached.py`` (the watcher: ``watcher.py``);
the ways of reaching Jupyter: ``modes.py``; the lab's directory on the cluster: ``lab_dir.py``; labs found
from any machine: ``remote_labs.py``.
"""

from __future__ import annotations

import importlib
import logging
import posixpath
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING

from . import commands, lab_dir, modes, pacing, slurm, state, untrusted, version, via_memory
from .errors import JobEnded, LabError, ModeUnreachable, SchedulerError, WaitTimeout
from .forwards.forward import check_port_free
from .remote import run
from .settings import LabSettings
from .state import LabRecord
from .state import settings_of as settings_for

if TYPE_CHECKING:  # imported when first used (``__getattr__`` below)
    from .detached import ensure_watcher, forward_alive, forwarding_labs, request_hold, start_detached, stop_detached
    from .forwards.holding import hold
    from .forwards.lab_forward import tunnel
    from .hops import Hops
    from .lab_status import LabStatus, added_forwards, ended_because, listens, not_answering, status, statuses
    from .probes import check_url, http_status

_log = logging.getLogger(__name__)
Progress = Callable[[slurm.JobInfo], None]


def submit(settings: LabSettings, hops: Hops) -> LabRecord:
    """Upload the launch script and token into a new private directory and ``sbatch`` it.

    The directory name carries random bytes, so it is unique even when Slurm restarts job ids at 1.
    On any failure the directory is removed and nothing is recorded. ``lab.via: auto`` is the mode that
    worked on this cluster before, else the first to try (``via_memory``).
    """
    settings = replace(settings, via=via_memory.candidates(settings)[0])
    check_port_free(settings.local_port)
    base = lab_dir.base(hops, settings.remote_dir)
    where = posixpath.join(base, f"{settings.name}-{secrets.token_hex(4)}")
    app = settings.app_spec
    # The job is submitted from this login node: reverse mode's far end will live there (its own name,
    # `hostname -f` where it has one), whichever node the cluster's name gives later logins.
    names = hops.login_names()
    record = LabRecord(name=settings.name, settings=asdict(settings), job_id="", remote_dir=where,
                       token=secrets.token_urlsafe(32), via=settings.via, local_port=settings.local_port,
                       url_path=app.open_path, app=app.name, created=time.time(),
                       login_host=names[-1] if names else "")
    # Recorded first, exclusively: a second start of the same name stops here; and from here on a crash
    # at any point leaves a record here and a lab.json there that lab.cancel and lab.list --cluster find.
    if not state.create(settings.state_path, record):
        raise LabError(f"a lab named {settings.name!r} is already recorded: `{commands.run('status')} --name "
                       f"{settings.name}`, or `{commands.run('cancel')} --name {settings.name}` first.")
    try:
        from . import batch_script  # the start's alone: status and cancel never render a script

        script = posixpath.join(where, lab_dir.SCRIPT)
        # The lab.json is there before the job exists: its id is found by its work directory (squeue's %Z)
        # if we die in sbatch. Directory, files and sbatch in one command: no file session to open first.
        files = {lab_dir.TOKEN_FILE: record.token, lab_dir.SCRIPT: batch_script.render(settings, where, hops.openssh),
                 lab_dir.META: _meta(record, settings).to_json()}
        submitted = lab_dir.create(hops, base, where, files, then=slurm.sbatch_command(script))
        record = replace(record, job_id=slurm.job_id_of(submitted))
    except BaseException:
        run(hops.shell(), ["rm", "-rf", "--", where], check=False)
        state.remove(settings.state_path, settings.name)
        raise
    state.update(settings.state_path, record.name, job_id=record.job_id)
    lab_dir.write(hops, posixpath.join(where, lab_dir.META), _meta(record, settings).to_json())
    return record


def _meta(record: LabRecord, settings: LabSettings) -> lab_dir.LabMeta:
    return lab_dir.LabMeta(record.name, record.job_id, record.via, record.created, version(), record.remote_dir,
                           record.url_path, settings.reverse_target, record.login_host, record.app)


def wait(settings: LabSettings, record: LabRecord, hops: Hops, progress: Progress | None = None,
         timeout: float | None = None, *, handoff: bool = False) -> LabRecord:
    """Wait until the job runs and Jupyter answers; fail at once, with the log's tail, if it ends first.

    ``handoff``: return as soon as Jupyter listens and the far end of its forward is known (recorded), without
    a probe of its own: the watcher's forward, asked for already, is the probe (``start --detach``).

    "It runs" and "it ended" are read from the lab's directory (the job writes its node there as it
    starts, and a mark as it ends); Slurm is asked only why it waits and when it may start, at a pace
    that backs off to ``pacing.WHILE_PENDING.most`` seconds with jitter. A Slurm that does not answer is
    asked again later, more slowly: that never ends the wait. ``progress`` gets each answer, and one
    RUNNING line once the job has started.
    """
    begun = time.monotonic()
    deadline = begun + (timeout if timeout is not None else settings.wait_timeout)
    asking = pacing.Asking(pacing.WHILE_PENDING, next_at=begun + pacing.FIRST_ASK)
    unreachable_since: float | None = None
    info = slurm.JobInfo(record.job_id, "PENDING")
    while True:
        looked, known = time.monotonic(), record.node
        step = look_interval(bool(known), looked - begun)
        seen = lab_dir.look(hops, record.remote_dir, node=record.node, step=step,
                            up_to=_look_for(record, asking, deadline))
        if seen.ended:
            raise JobEnded(ended_early(record, lab_dir.log_tail(hops, record.remote_dir, 30)))
        seen.checked_node(record.remote_dir)
        if seen.node and record.node != seen.node:  # the job has just written its node (Slurm may have said so)
            if not info.running:
                info = slurm.JobInfo(record.job_id, "RUNNING", node=seen.node)
                if progress:
                    progress(info)
            # Asked while Jupyter starts (a second or so), not after: the far end needs the node's address.
            record = _started_on(hops, record, seen.node)
            if handoff:  # the watcher logs in to the node meanwhile
                state.update(settings.state_path, record.name, node=record.node, node_addr=record.node_addr,
                             resources=record.resources)
        if seen.node:
            record, ready, unreachable = _probe(hops, record, seen, probe=not handoff)
            if ready:  # merged under the lock: a background forward may have written its own fields meanwhile
                learnt = {key: getattr(record, key) for key in _LEARNT}
                return state.update(settings.state_path, record.name, **learnt) or record
            # Jupyter has written its runtime file, so it listens: a refused channel means this mode's
            # path to it is closed on this site, which waiting will not fix.
            unreachable_since = (unreachable_since or time.monotonic()) if unreachable else None
            if unreachable_since and time.monotonic() - unreachable_since > 15:
                raise _mode_unreachable(record, unreachable)
        elif asking.due(time.monotonic()):
            info = _ask(hops, record, asking, info)
            if progress:
                progress(info)
            if not info.active and info.state != "UNKNOWN":
                raise JobEnded(ended_early(record, lab_dir.log_tail(hops, record.remote_dir, 30)))
        if time.monotonic() > deadline:
            if info.state == "UNKNOWN":  # not a timeout of the job: nothing can be said about it, or done
                raise SchedulerError(f"{record.app_title} did not answer within {deadline - begun:.0f} s and Slurm "
                                     f"is not answering (job {record.job_id}): the job and the record are kept.")
            why = f"pending: {info.reason}" if info.state == "PENDING" and info.reason else info.state.lower()
            raise WaitTimeout(f"{record.app_title} did not answer within {deadline - begun:.0f} s "
                              f"(job {record.job_id} {why})")
        if not seen.node or seen.node == known:  # no new sign (a look that waited for one has paced itself)
            time.sleep(max(0.0, step - (time.monotonic() - looked)))


def _look_for(record: LabRecord, asking: pacing.Asking, deadline: float, most: float = 30) -> float:
    """How long the next look may wait on the login node for the job's next sign: until Slurm is due to be
    asked (while the job has not started), never past the deadline."""
    now = time.monotonic()
    until = deadline if record.node else min(deadline, asking.next_at)
    return max(0.0, min(until - now, most))


_LEARNT = ("node", "node_addr", "app_port", "remote_host", "remote_port", "remote_socket",
           "resources")  # by lab.wait


def _started_on(hops: Hops, record: LabRecord, node: str) -> LabRecord:
    """The record once its job runs on ``node``: the node's address and what the job was given, asked in
    one command while the app starts (the far end needs the address)."""
    if record.node_addr:
        return replace(record, node=node)
    addr, given = slurm.on_start(hops.shell(), node, record.job_id)
    return replace(record, node=node, node_addr=addr, resources=given.to_dict())


def _ask(hops: Hops, record: LabRecord, asking: pacing.Asking, last: slurm.JobInfo) -> slurm.JobInfo:
    """Slurm's answer about a job that has not started; state UNKNOWN, saying when it is asked again, if
    Slurm could not be asked (the wait goes on)."""
    try:
        info = slurm.query(hops.shell(), record.job_id, timeout=hops.settings.connect_timeout + 10)
    except SchedulerError as exc:
        delay = asking.unanswered(time.monotonic())
        _log.info("%s", exc)
        return slurm.JobInfo(record.job_id, "UNKNOWN", f"Slurm not answering; asking again in {delay:.0f} s",
                             start=last.start)
    asking.answered(time.monotonic())
    return info


def ended_early(record: LabRecord, log_text: str) -> str:
    """Why a job ended before Jupyter answered: the batch script's own error line if it wrote one
    (``fabfile-lab: error: ...``), else the log's last lines."""
    lines = [untrusted.printable(ln.strip()) for ln in log_text.splitlines() if ln.strip()]
    ours = [ln.removeprefix("fabfile-lab: error: ") for ln in lines if ln.startswith("fabfile-lab: error: ")]
    if ours:
        return f"job {record.job_id} ended before {record.app_title} answered: {ours[-1]} -- fix lab.env or lab.setup."
    tail = " | ".join(lines[-5:])
    return (f"job {record.job_id} ended before {record.app_title} answered; log tail: {tail or '(empty)'} -- fix "
            "lab.env, lab.setup or lab.command and retry.")


def look_interval(started: bool, waited: float) -> float:
    """How often the lab's directory is looked at (on the login node, no Slurm): often while the job
    starts -- free resources start it within seconds, and Jupyter answers a second or two later --, gently
    on the shared filesystem once it has queued a while. (Where the login node has bash, a look that
    waits there starts no process per step; plain sh steps every 0.05 s at the most.)"""
    if started:
        return 0.01
    if waited < 10:
        return 0.2
    return 1.0 if waited < 120 else 5.0


def _probe(hops: Hops, record: LabRecord, seen: lab_dir.Look, probe: bool = True) -> tuple[LabRecord, bool, str]:
    """What the runtime file and the mode say about a started job: (the record with what was learnt --
    node, ports, the far end's endpoint --, whether Jupyter answers with 200 -- or, without ``probe``, that
    its endpoint is known --, why its endpoint could not be reached or "")."""
    runtime = seen.runtime
    if not runtime or not isinstance(runtime.get("port"), int):
        return record, False, ""
    node_addr = record.node_addr or slurm.node_address(hops.shell(), seen.node)
    record = replace(record, node=seen.node, node_addr=node_addr, app_port=int(runtime["port"]))
    endpoint = modes.mode(record.via).endpoint(runtime, node_addr,
                                               lambda name: lab_dir.read(hops, record.remote_dir, name))
    if endpoint is None:
        return record, False, ""
    record = record.reaching(endpoint)
    if not probe:
        return record, True, ""
    from .probes import http_status  # once Jupyter listens: not before sbatch

    code, unreachable = http_status(hops, record)
    return record, code == 200, unreachable


def unreachable(hops: Hops, record: LabRecord, failure: LabError) -> LabError:
    """Why a started lab's Jupyter could not be reached through a forward (``failure``): one probe along the
    lab's path tells a refusal (raised) from a mode that cannot reach it here, or from a forward of ours
    that failed while Jupyter answers (``failure`` itself: the job is kept)."""
    from .probes import http_status

    code, why = http_status(hops, record)
    return failure if code == 200 else _mode_unreachable(record, why or str(failure))


def _mode_unreachable(record: LabRecord, why: str) -> ModeUnreachable:
    return ModeUnreachable(f"{record.app_title} runs on {record.node} but {record.far} cannot be reached via "
                           f"{record.via} ({why}); set lab.via to {modes.others(record.via)}.")


def logs(record: LabRecord, hops: Hops) -> str:
    """The whole job log (``lab_dir/job.log``), read over SFTP."""
    return lab_dir.log_tail(hops, record.remote_dir, lines=10_000)


def follow_logs(record: LabRecord, hops: Hops, write: Callable[[str], None], stop: threading.Event,
                interval: float = 2.0) -> str:
    """Write the job log (from its last 64 KiB) as it grows until the job ends (returns why) or ``stop``
    is set (returns "").

    The end is the job's own mark in its directory; Slurm is asked only while the job has not started
    (a job cancelled while pending writes nothing), and rarely after, in case the mark never comes."""
    path = posixpath.join(record.remote_dir, lab_dir.JOB_LOG)
    offset, ended, tail = lab_dir.tail_offset(hops, path), False, ""
    asking = pacing.Asking(pacing.WHILE_PENDING)
    info = slurm.JobInfo(record.job_id, "PENDING")
    while True:
        new = lab_dir.read_from(hops, path, offset)
        if new:
            text = new.decode(errors="replace")
            write(text)
            offset += len(new)
            tail = (tail + text)[-4000:]
        if ended:
            return slurm.end_reason(hops.shell(), record.job_id, tail)
        if stop.wait(interval):
            return ""
        seen = lab_dir.look(hops, record.remote_dir)
        asking.pace = pacing.WHILE_RUNNING if seen.node else pacing.WHILE_PENDING
        if seen.ended:
            ended = True
        elif asking.due(time.monotonic()):
            info = _ask(hops, record, asking, info)
            ended = not info.active and info.state != "UNKNOWN"


@dataclass(frozen=True)
class Cancelled:
    """What a cancel ended, and what it left running on purpose."""

    record: LabRecord
    jobs_ended: tuple[str, ...] = ()  # the jobs the lab had started, ended with it
    jobs_kept: tuple[str, ...] = ()  # the same, left running (keep_jobs)


def cancel(settings: LabSettings, record: LabRecord, hops: Hops, forget: bool = True, *,
           keep_jobs: bool = False) -> Cancelled:
    """End the job, the jobs it started (unless ``keep_jobs``), the background forward, the lab's directory
    on the cluster and (``forget``) the local record."""
    from .detached import stop_detached
    from .lab_status import known_job

    if state.exists(settings.state_path, record.name):
        stop_detached(settings, record)  # its forwards close first; the watcher holds the others on
    shell = hops.shell()
    record = known_job(hops, record)
    started = tuple(dict.fromkeys((*record.jobs, *lab_dir.jobs(hops, record.remote_dir)))) if record.remote_dir else ()
    if keep_jobs and started:  # before the job is told to end: its trap would end them
        lab_dir.write(hops, posixpath.join(record.remote_dir, lab_dir.KEEP_JOBS), "")
    slurm.cancel_many(shell, (record.job_id, *(() if keep_jobs else started)))
    if record.job_id:
        _await_end(hops, record)
    # Never rm -rf anything the tool did not make: BASE/NAME-<8 hex>, right under this config's base.
    if lab_dir.is_lab_dir(record.remote_dir, lab_dir.base(hops, settings.remote_dir)):
        run(shell, ["rm", "-rf", "--", record.remote_dir])
    else:
        _log.warning("not removing %r: it is not a lab directory under %s", record.remote_dir, settings.remote_dir)
    if forget:
        state.remove(settings.state_path, record.name)
    return Cancelled(record, () if keep_jobs else started, started if keep_jobs else ())


def _await_end(hops: Hops, record: LabRecord, within: float = 20) -> None:
    """Wait (at most ``within`` seconds) until a cancelled job has stopped writing into its directory and
    Slurm has let it go: its own end mark there (or -- for a job that never started, or one killed before
    it could write the mark -- none after 5 s), then Slurm listing it neither as active nor as COMPLETING,
    asked at a short, bounded pace. A user's ``squeue`` right after ``cancel`` shows nothing of it."""
    begun = time.monotonic()
    asking = pacing.Asking(pacing.AFTER_CANCEL)
    info = slurm.JobInfo(record.job_id, "PENDING")
    marked = False
    while time.monotonic() - begun < within:
        if not marked:
            seen = lab_dir.look(hops, record.remote_dir)
            marked = bool(seen.ended)
        waiting_for_mark = not marked and seen.node and time.monotonic() - begun < 5
        if not waiting_for_mark and asking.due(time.monotonic()):
            info = _ask(hops, record, asking, info)
            if _let_go(info):
                return
        time.sleep(0.25)


def _let_go(info: slurm.JobInfo) -> bool:
    """Slurm has finished with a job: neither active nor completing (its processes still being ended)."""
    return not info.active and info.state not in ("UNKNOWN", "COMPLETING")


__all__ = ["Cancelled", "LabRecord", "LabStatus", "added_forwards", "cancel", "check_url", "ended_because",
           "ensure_watcher", "follow_logs", "forward_alive", "forwarding_labs", "hold", "http_status", "listens",
           "logs", "not_answering", "request_hold", "settings_for", "start_detached", "status", "statuses",
           "stop_detached", "submit", "tunnel", "wait"]


# The names this module offers from the steps around it, imported on first use (PEP 562): a start reaches
# sbatch without loading the watcher's, the status's or the forwards' modules.
_LATER = {
    **dict.fromkeys(("ensure_watcher", "forward_alive", "forwarding_labs", "request_hold", "start_detached",
                     "stop_detached"), "detached"),
    **dict.fromkeys(("LabStatus", "added_forwards", "ended_because", "known_job", "listens", "not_answering",
                     "status", "statuses"), "lab_status"),
    "check_url": "probes", "http_status": "probes", "hold": "forwards.holding", "tunnel": "forwards.lab_forward",
}


def __getattr__(name: str):
    if name not in _LATER:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_LATER[name]}", __package__), name)
