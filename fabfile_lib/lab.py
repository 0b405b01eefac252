"""The lab's life cycle: submit, wait until Jupyter answers, report, cancel.

Plain functions over :class:`~fabfile_lib.hops.Hops` and :class:`~fabfile_lib.state.LabRecord`; the
Invoke tasks in ``fabfile_lib.tasks.lab`` only parse options and print. The steps around them live in
modules of their own and are re-exported here, so a team's ``tasks.py`` needs only this one::

    with Hops(settings) as hops:
        record = lab.submit(settings, hops)
        record = lab.wait(settings, record, hops)
        with lab.tunnel(record, hops) as fwd:
            ...

The forwards: ``tunnel.py``; the background forward: ``detached.py``; the ways of reaching Jupyter:
``modes.py``; the lab's directory on the cluster: ``lab_dir.py``; labs found from any machine:
``remote_labs.py``.
"""

from __future__ import annotations

import posixpath
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

from . import batch_script, detached, lab_dir, modes, probes, slurm, state, version
from .detached import forward_alive, forwarding_labs, spawn_forward, start_detached, stop_detached
from .errors import JobEnded, LabError, WaitTimeout
from .forwards import check_port_free
from .hops import Hops, run
from .probes import check_url, http_status
from .settings import LabSettings
from .state import LabRecord
from .state import settings_of as settings_for
from .tunnel import hold, tunnel

Progress = Callable[[slurm.JobInfo], None]


def submit(settings: LabSettings, hops: Hops) -> LabRecord:
    """Upload the launch script and token into a new private directory and ``sbatch`` it.

    The directory name carries random bytes, so it is unique even when Slurm restarts job ids at 1.
    On any failure the directory is removed and nothing is recorded.
    """
    if state.exists(settings.state_path, settings.name):
        raise LabError(f"a lab named {settings.name!r} is already recorded: `inv lab.status --name "
                       f"{settings.name}`, or `inv lab.cancel --name {settings.name}` first.")
    check_port_free(settings.local_port)
    login = hops.login()
    sftp = login.sftp()
    base = lab_dir.base(hops, settings.remote_dir)
    lab_dir.mkdir_private(sftp, base)
    where = posixpath.join(base, f"{settings.name}-{secrets.token_hex(4)}")
    lab_dir.mkdir_private(sftp, where)
    token = secrets.token_urlsafe(32)
    path = "/lab" if "lab" in settings.command.split()[-1] else "/tree" if "notebook" in settings.command else "/"
    job_id = ""
    try:
        lab_dir.write_private(sftp, posixpath.join(where, lab_dir.TOKEN_FILE), token)
        script = posixpath.join(where, lab_dir.SCRIPT)
        lab_dir.write_private(sftp, script, batch_script.render(settings, where))
        job_id = slurm.submit(login, script, where)
        record = LabRecord(name=settings.name, settings=asdict(settings), job_id=job_id,
                           remote_dir=where, token=token, via=settings.via, local_port=settings.local_port,
                           url_path=path, created=time.time())
        lab_dir.write_private(sftp, posixpath.join(where, lab_dir.META), _meta(record, settings).to_json())
    except BaseException:
        if job_id:  # submitted, but its lab.json could not be written: nothing half-made is kept
            slurm.cancel(login, job_id)
        run(login, ["rm", "-rf", "--", where], check=False)
        raise
    state.save(settings.state_path, record)
    return record


def _meta(record: LabRecord, settings: LabSettings) -> lab_dir.LabMeta:
    return lab_dir.LabMeta(record.name, record.job_id, record.via, record.created, version(), record.remote_dir,
                           record.url_path, settings.reverse_target)


def wait(settings: LabSettings, record: LabRecord, hops: Hops, progress: Progress | None = None,
         timeout: float | None = None) -> LabRecord:
    """Wait until the job runs and Jupyter answers; fail at once, with the log's tail, if it ends first.

    ``progress`` gets every squeue answer (each second or so while the job starts, every 5 s once it
    has queued for two minutes); showing only changes is the caller's choice.
    """
    begun = time.monotonic()
    deadline = begun + (timeout if timeout is not None else settings.wait_timeout)
    login = hops.login()
    unreachable_since: float | None = None
    info: slurm.JobInfo | None = None
    next_query = 0.0
    while True:
        if info is None or time.monotonic() >= next_query:
            info = slurm.query(login, record.job_id, timeout=settings.connect_timeout + 10)
            # squeue is the scheduler's load: once the job runs, the runtime file is what changes.
            next_query = time.monotonic() + (1.0 if info.running else 0.0)
            if progress:
                progress(info)
            if not info.active:
                raise JobEnded(ended_early(record, lab_dir.log_tail(hops, record.remote_dir, 30)))
        if info.running:
            record, ready, unreachable = _probe(hops, record, info)
            if ready:
                state.save(settings.state_path, record)
                return record
            # Jupyter has written its runtime file, so it listens: a refused channel means this mode's
            # path to it is closed on this site, which waiting will not fix.
            unreachable_since = (unreachable_since or time.monotonic()) if unreachable else None
            if unreachable_since and time.monotonic() - unreachable_since > 15:
                raise LabError(f"Jupyter runs on {record.node} but {record.remote_host}:{record.remote_port} "
                               f"cannot be reached via {record.via} ({unreachable}); set lab.via to "
                               f"{modes.others(record.via)}.")
        if time.monotonic() > deadline:
            why = f"pending: {info.reason}" if info.state == "PENDING" and info.reason else info.state.lower()
            raise WaitTimeout(f"Jupyter did not answer within {deadline - begun:.0f} s (job {record.job_id} {why})")
        time.sleep(poll_interval(info.running, time.monotonic() - begun))


def ended_early(record: LabRecord, log_text: str) -> str:
    """Why a job ended before Jupyter answered: the batch script's own error line if it wrote one
    (``fabfile-lab: error: ...``), else the log's last lines."""
    lines = [ln.strip() for ln in log_text.splitlines() if ln.strip()]
    ours = [ln.removeprefix("fabfile-lab: error: ") for ln in lines if ln.startswith("fabfile-lab: error: ")]
    if ours:
        return f"job {record.job_id} ended before Jupyter answered: {ours[-1]} -- fix lab.env or lab.setup."
    tail = " | ".join(lines[-5:])
    return (f"job {record.job_id} ended before Jupyter answered; log tail: {tail or '(empty)'} -- fix "
            "lab.env, lab.setup or lab.command and retry.")


def poll_interval(running: bool, waited: float) -> float:
    """How long to sleep between looks at a job: often while it starts (free resources usually start it
    within seconds, and Jupyter answers a second or two later), gently on the scheduler once it queues."""
    if running:
        return 0.1  # a look at the runtime file: one SFTP listdir
    if waited < 10:
        return 0.2
    return 1.0 if waited < 120 else 5.0


def _probe(hops: Hops, record: LabRecord, info: slurm.JobInfo) -> tuple[LabRecord, bool, str]:
    """What the runtime file and the mode say about a running job: (the record with what was learnt --
    node, ports, the far end's endpoint --, whether Jupyter answers with 200, why its endpoint could not
    be reached or "")."""
    runtime = lab_dir.runtime_info(hops, record.remote_dir)
    if not runtime:
        return record, False, ""
    node_addr = record.node_addr or slurm.node_address(hops.login(), info.node)
    record = replace(record, node=info.node, node_addr=node_addr, jupyter_port=int(runtime["port"]))
    endpoint = modes.mode(record.via).endpoint(runtime, node_addr,
                                               lambda name: lab_dir.read(hops, record.remote_dir, name))
    if endpoint is None:
        return record, False, ""
    record = replace(record, remote_host=endpoint[0], remote_port=endpoint[1])
    code, unreachable = probes.http_status(hops, record)
    return record, code == 200, unreachable


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
    jupyter_port: int
    local_port: int
    url: str
    forwarding: bool
    remote_dir: str
    end: str = ""  # when the job reaches its time limit
    ended_because: str = ""  # once it has ended

    def to_dict(self) -> dict:
        return asdict(self)


def status(record: LabRecord, hops: Hops) -> LabStatus:
    """The lab's job as squeue sees it now, with its URL if forwarded, or why it ended."""
    info = slurm.query(hops.login(), record.job_id, timeout=hops.settings.connect_timeout + 10)
    forwarding = detached.forward_alive(record)
    port = record.forward_port if forwarding else record.local_port
    why = "" if info.active else ended_because(hops, record)
    return LabStatus(record.name, record.job_id, info.state, info.reason, info.node or record.node,
                     info.time_left, record.via, record.remote_port, record.jupyter_port, port,
                     record.url(port) if port else "", forwarding, record.remote_dir, info.end, why)


def ended_because(hops: Hops, record: LabRecord) -> str:
    """Why the lab's job ended, in a few words (sacct, else the job log)."""
    return slurm.end_reason(hops.login(), record.job_id, lab_dir.log_tail(hops, record.remote_dir, 30))


def logs(record: LabRecord, hops: Hops) -> str:
    """The whole job log (``lab_dir/job.log``), read over SFTP."""
    return lab_dir.log_tail(hops, record.remote_dir, lines=10_000)


def follow_logs(record: LabRecord, hops: Hops, write: Callable[[str], None], stop: threading.Event,
                interval: float = 2.0) -> str:
    """Write the job log as it grows until the job ends (returns why) or ``stop`` is set (returns "")."""
    offset, next_look, ended, tail = 0, 0.0, False, ""
    while True:
        new = lab_dir.read_from(hops, posixpath.join(record.remote_dir, lab_dir.JOB_LOG), offset)
        if new:
            text = new.decode(errors="replace")
            write(text)
            offset += len(new)
            tail = (tail + text)[-4000:]
        if ended:
            return slurm.end_reason(hops.login(), record.job_id, tail)
        if stop.wait(interval):
            return ""
        if time.monotonic() >= next_look:
            ended = not slurm.query(hops.login(), record.job_id, hops.settings.connect_timeout + 10).active
            next_look = time.monotonic() + 5


def cancel(settings: LabSettings, record: LabRecord, hops: Hops, forget: bool = True) -> None:
    """End the job, the background forward, the lab's directory on the cluster and (``forget``) the local
    record."""
    detached.end_forward_process(record)
    login = hops.login()
    slurm.cancel(login, record.job_id)
    deadline = time.monotonic() + 20
    while slurm.query(login, record.job_id).active and time.monotonic() < deadline:
        time.sleep(0.5)
    if lab_dir.PATTERN.match(record.remote_dir):  # never rm -rf anything the tool did not make
        run(login, ["rm", "-rf", "--", record.remote_dir])
    if forget:
        state.remove(settings.state_path, record.name)


__all__ = ["LabRecord", "LabStatus", "cancel", "check_url", "follow_logs", "forward_alive", "forwarding_labs", "hold",
           "http_status", "logs", "settings_for", "spawn_forward", "start_detached", "status", "stop_detached",
           "submit", "tunnel", "wait"]
