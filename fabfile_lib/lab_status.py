"""A lab's status: its job, whether its URL answers, where the app listens, why it ended -- known from the
lab's own path where it can vouch for itself, else asked of Slurm, once for all the labs of a cluster.

Apart from the life cycle (``lab.py``, which re-exports it) so that a ``status`` reads records and asks a
question without loading the steps that submit, wait and cancel, nor the hops if nothing needs them.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING

from . import added_ports, commands, detached, lazy, modes, probes, slurm, state
from .job_resources import Resources
from .state import LabRecord

if TYPE_CHECKING:
    from .hops import Hops

lab_dir = lazy.Module("fabfile_lib.lab_dir")  # the job log, read only for a job that has ended
_log = logging.getLogger(__name__)


@dataclass
class LabStatus:
    name: str
    job_id: str
    state: str
    reason: str
    node: str
    time_left: str
    via: str
    remote_port: int
    app_port: int
    local_port: int
    url: str  # only while it answers
    forwarding: bool
    remote_dir: str
    end: str = ""  # when the job reaches its time limit
    ended_because: str = ""  # once it has ended
    answers: bool = False  # Jupyter answered through the URL just now
    not_answering: str = ""  # why the URL does not answer, in a few words, while the job is active
    listens: str = ""  # where Jupyter listens on the cluster and who else can reach it (see listens())
    remote_socket: str = ""  # the socket the forward reaches, when the app is on one
    app: str = ""  # which app (apps.py)
    forwards: tuple = ()  # the forwards added to it (``added_forwards``), as mappings
    resources: dict = field(default_factory=dict)  # what the job was given (``job_resources.Resources``)
    given: str = ""  # the same in a few words: "4 CPUs, 16G, 1 GPU (a100)"
    jobs: tuple = ()  # the Slurm jobs the lab has started: job_id and state of each

    def to_dict(self) -> dict:
        return asdict(self)


def status(record: LabRecord, hops: Hops) -> LabStatus:
    """The lab now: its job (from its own path, else as Slurm sees it), whether its URL answers, or why the
    job ended."""
    return statuses([record], hops)[0]


def known_job(hops: Hops, record: LabRecord) -> LabRecord:
    """The record with its job id: one recorded before sbatch (the tool was killed inside it) gets the
    job that runs in its directory (one squeue), recorded from then on; ENDED's id "" if there is none."""
    if record.job_id:
        return record
    job = slurm.job_in(slurm.my_jobs(hops.shell(), timeout=hops.settings.connect_timeout + 10), record.remote_dir)
    if not job:
        return record
    return state.update(hops.settings.state_path, record.name, job_id=job.job_id) or replace(record, job_id=job.job_id)


def statuses(records: list[LabRecord], hops: Hops) -> list[LabStatus]:
    """:func:`status` of several labs on one cluster, with at most one question to Slurm for all of them.

    A lab whose URL answers now through its watcher, which learnt its time limit from Slurm, is vouched for
    by its own path: running, on its node, the time left counted from that limit. Slurm is asked about the
    others only (while the URLs are tried), and about a vouched lab whose URL turns out not to answer."""
    if not records:
        return []
    records = [known_job(hops, r) for r in records]
    started = [j for r in records for j in r.jobs]  # the jobs the labs started: asked along with them
    with ThreadPoolExecutor(max_workers=min(8, len(records)) + 1) as pool:
        answering = [pool.submit(_answering, r) for r in records]
        doubtful = [r.job_id for r in records if not _vouchable(r)]
        asking = pool.submit(_ask_many, hops, doubtful + started) if doubtful or started else None
        answers = [a.result() for a in answering]
        infos = asking.result() if asking else {}
    late = [r.job_id for r, ok in zip(records, answers, strict=True) if _vouchable(r) and not ok]
    infos.update(_ask_many(hops, late) if late else {})
    for record in records:
        if record.job_id not in infos:
            _log.debug("lab %s: vouched for by its own path (its URL answers; time limit as its watcher learnt it)",
                       record.name)
    return [_status(r, hops, infos.get(r.job_id) or _vouched(r), ok, infos)
            for r, ok in zip(records, answers, strict=True)]


def _ask_many(hops: Hops, job_ids: list[str]) -> dict[str, slurm.JobInfo]:
    infos = slurm.query_many(hops.shell(), job_ids, timeout=hops.settings.connect_timeout + 10)
    return {j: infos.get(j, slurm.JobInfo(j, "ENDED")) for j in job_ids}


def _vouchable(record: LabRecord) -> bool:
    """Whether the lab's own path can say how its job is, if its URL answers: held by a live watcher that
    knows when the job reaches its time limit."""
    return bool(detached.forward_alive(record) and record.node and record.job_ends_at > time.time() + 5)


def _vouched(record: LabRecord) -> slurm.JobInfo:
    return slurm.JobInfo(record.job_id, "RUNNING", node=record.node, end=record.job_end,
                         time_left=slurm.clock(record.job_ends_at - time.time()))


def _answering(record: LabRecord) -> bool:
    """Whether the lab's URL answers now, through its background forwards."""
    return bool(detached.forward_alive(record) and record.forward_port
                and probes.answers(record.forward_port, record.app_spec))


def _status(record: LabRecord, hops: Hops, info: slurm.JobInfo, answering: bool,
            infos: dict[str, slurm.JobInfo]) -> LabStatus:
    forwarding = detached.forward_alive(record)
    port = record.forward_port if forwarding else record.local_port
    answers = answering and info.active
    why = "" if info.active else ended_because(hops, record)
    given = Resources.from_dict(record.resources)
    return LabStatus(record.name, record.job_id, info.state, info.reason, info.node or record.node,
                     info.time_left, record.via, record.remote_port, record.app_port, port,
                     record.url(port) if answers else "", forwarding, record.remote_dir, info.end, why, answers,
                     "" if answers or not info.active else not_answering(record, info, forwarding),
                     listens(record), record.remote_socket, record.app,
                     added_forwards(record, forwarding and info.active), given.to_dict(), given.describe(),
                     tuple({"job_id": j, "state": infos[j].state if j in infos else "UNKNOWN"} for j in record.jobs))


def added_forwards(record: LabRecord, held: bool) -> tuple[dict, ...]:
    """The forwards added to the lab, each with its URL while it is up, and who else can reach its far end."""
    shown = []
    for entry in added_ports.from_record(record.added):
        up = held and entry.state == "up"
        shown.append({"to": entry.to, "local_port": entry.port, "url": entry.url if up else "",
                      "state": entry.state if held else "not held", "note": entry.note,
                      "shared_with": entry.target.shared_with(record.node, record.login_host)})
    return tuple(shown)


def listens(record: LabRecord) -> str:
    """Where the app listens, in a few words, and whether anyone but the user can reach it: a private
    socket (0600, in a 0700 directory), or a TCP port any user of that host can reach, guarded by the
    app's secret only (or by nothing, for an app in lab.open_apps). "" until the app has answered."""
    if not record.reachable:
        return ""
    app = record.app_spec
    guard = "token-only" if app.authenticated else f"open to users of {record.node}"
    if not record.app_port:
        where = f"{app.title} on a private socket"
    elif record.via == modes.Via.LOGIN:
        where = f"{app.title} on port {record.app_port} of {record.node}'s address ({guard})"
    else:
        why = "Paramiko cannot forward to a socket" if app.has_socket else f"{app.title} has no socket listener"
        where = f"{app.title} on port {record.app_port} of {record.node}'s loopback ({guard}: {why})"
    if record.via == modes.Via.REVERSE and not record.remote_socket:  # stream-local refused, or Paramiko
        where += f", reached through port {record.remote_port} of {record.login_host or 'the login node'}'s " \
                 "loopback (token-only)"
    return where


def not_answering(record: LabRecord, info: slurm.JobInfo, forwarding: bool) -> str:
    """Why an active lab's URL does not answer, and what to do, in a few words."""
    if not info.running:
        return f"job {info.state.lower()}{f' ({info.reason})' if info.reason else ''}: not started yet"
    if not forwarding and record.hold:
        return (f"its background forwards are gone (their process ended): `{commands.run('tunnel')} --name "
                f"{record.name} --detach` brings them back, with every lab held beside it")
    if not forwarding:
        return f"no forwards open: `{commands.run('tunnel')} --name {record.name}`"
    return record.forward_note or "forward down, reconnecting"


def ended_because(hops: Hops, record: LabRecord) -> str:
    """Why the lab's job ended, in a few words (sacct, else the job log)."""
    return slurm.end_reason(hops.shell(), record.job_id, lab_dir.log_tail(hops, record.remote_dir, 30))
