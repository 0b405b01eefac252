"""The lab's life: submit, wait, reach, hold the forwards, report, cancel.

Plain functions over :class:`~fabfile_lib.hops.Hops` and :class:`~fabfile_lib.state.LabRecord`; the
Invoke tasks in ``fabfile_lib.tasks.lab`` only parse options and print. A team's own ``tasks.py`` can
chain these directly::

    with Hops(settings) as hops:
        record = submit(settings, hops)
        record = wait(settings, record, hops)
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import paramiko

from . import __version__, batch_script, lab_dir, master, slurm, ssh_forward, state
from .errors import (
    AuthenticationError,
    ConnectError,
    HostKeyError,
    JobEnded,
    LabError,
    PromptNeeded,
    SchedulerError,
    WaitTimeout,
)
from .forwards import Forward, Heartbeat, check_port_free, forward_local
from .hops import Hops, choose_transport, run
from .procs import alive, terminate
from .reconnect import Backoff
from .settings import MODES, LabSettings
from .state import LabRecord
from .watch import JobWatch

Progress = Callable[[slurm.JobInfo], None]
LOGIN_WAIT = 30 * 60  # how long a held forward waits for the user to log in again before it gives up
_ALLOCATED = re.compile(r"Allocated port (\d+) for remote forward")


def settings_for(record: LabRecord, **overrides) -> LabSettings:
    """The settings a lab was started with: its cluster does not change with the current config."""
    return LabSettings.from_config(record.settings, name=record.name, **overrides)


# -- submit ------------------------------------------------------------------------------------------

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
    try:
        lab_dir.write_private(sftp, posixpath.join(where, batch_script.TOKEN_FILE), token)
        script = posixpath.join(where, batch_script.SCRIPT)
        lab_dir.write_private(sftp, script, batch_script.render(settings, where))
        job_id = slurm.submit(login, script, where)
        record = LabRecord(name=settings.name, settings=asdict(settings), job_id=job_id,
                           remote_dir=where, token=token, via=settings.via, local_port=settings.local_port,
                           url_path=path, created=time.time())
        lab_dir.write_private(sftp, posixpath.join(where, lab_dir.META), _meta(record, settings).to_json())
    except BaseException:
        if "job_id" in locals():
            slurm.cancel(login, job_id)
        run(login, ["rm", "-rf", "--", where], check=False)
        raise
    state.save(settings.state_path, record)
    return record


def _meta(record: LabRecord, settings: LabSettings) -> lab_dir.LabMeta:
    return lab_dir.LabMeta(record.name, record.job_id, record.via, record.created, __version__, record.remote_dir,
                           record.url_path, settings.reverse_target)


# -- wait --------------------------------------------------------------------------------------------

def log_tail(hops: Hops, record: LabRecord, lines: int = 20) -> str:
    text = lab_dir.read(hops, record.remote_dir, batch_script.JOB_LOG) or ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _runtime_info(hops: Hops, record: LabRecord) -> dict | None:
    runtime = posixpath.join(record.remote_dir, batch_script.RUNTIME_DIR)
    try:
        files = [f for f in hops.login().sftp().listdir(runtime) if re.fullmatch(r"jpserver-\d+\.json", f)]
    except OSError:
        return None
    for name in files:
        try:
            return json.loads(lab_dir.read(hops, record.remote_dir, batch_script.RUNTIME_DIR, name) or "")
        except ValueError:
            continue  # being written
    return None


def _reverse_port(hops: Hops, record: LabRecord) -> int:
    """The login-side port of the job's ``ssh -R``; 0 while it is not up yet."""
    text = lab_dir.read(hops, record.remote_dir, batch_script.REVERSE_LOG) or ""
    match = _ALLOCATED.search(text)
    if match:
        return int(match.group(1))
    if "fabfile-lab: reverse ssh exited" in text:
        first = next((ln for ln in text.splitlines() if ln.strip()), "")
        raise LabError(f"the job's reverse ssh to the login node failed ({first.strip()}); "
                       f"set lab.via to compute or login, or fix lab.reverse_target and the node's ssh key.")
    return 0


def _other_modes(via: str) -> str:
    return ", ".join(m for m in MODES if m != via)


def _unreachable_node(exc: LabError) -> LabError:
    return type(exc)(f"{exc} -- the compute node cannot be reached over ssh from the login node; "
                     f"set lab.via to one of: {_other_modes('compute')}.")


def _paramiko_transport(hops: Hops, record: LabRecord) -> paramiko.Transport:
    """The Paramiko transport whose far end reaches Jupyter in this lab's mode."""
    login = hops.login()  # a failure before the login node is not the compute node's
    if record.via != "compute":
        return login.transport
    try:
        return hops.node(record.node_addr).transport
    except LabError as exc:
        raise _unreachable_node(exc) from None


def _stream(hops: Hops, record: LabRecord):
    """A byte stream to Jupyter as seen from the far end of this lab's mode: ``ssh -W`` on the OpenSSH
    transport, a ``direct-tcpip`` channel on Paramiko's."""
    host, port = record.remote_host, record.remote_port
    if hops.openssh:
        if record.via == "compute":
            argv = hops.node_ssh(record.node_addr, "-W", f"127.0.0.1:{port}")
            return ssh_forward.Stream(argv, f"cannot reach {record.node} over ssh from the login node")
        login_master = hops.master
        return ssh_forward.Stream(login_master.argv("-W", f"{host}:{port}", login_master.dest), f"{host}:{port}")
    return _paramiko_transport(hops, record).open_channel("direct-tcpip", (host, port), ("127.0.0.1", 0), timeout=10)


def _status_request(host: str, token: str) -> bytes:
    """GET /api/status with the token in a header (never in a URL that a log could keep)."""
    return f"GET /api/status HTTP/1.0\r\nHost: {host}\r\nAuthorization: token {token}\r\n\r\n".encode()


def _status_code(head: bytes) -> int:
    match = re.match(r"HTTP/1\.\d (\d{3})", head.decode(errors="replace"))
    return int(match.group(1)) if match else 0


def http_status(hops: Hops, record: LabRecord) -> tuple[int, str]:
    """GET /api/status through the lab's path: (HTTP status, "") or (0, why Jupyter could not be reached)."""
    try:
        stream = _stream(hops, record)
    except (paramiko.SSHException, OSError, EOFError) as exc:
        return 0, str(exc) or type(exc).__name__
    try:
        stream.settimeout(10)
        stream.sendall(_status_request(record.remote_host, record.token))
        head = stream.recv(64)
    except (TimeoutError, OSError, paramiko.SSHException):
        head = b""
    finally:
        stream.close()
    failure = stream.failure() if isinstance(stream, ssh_forward.Stream) else None
    if isinstance(failure, (HostKeyError, AuthenticationError, PromptNeeded)):
        raise _unreachable_node(failure) if record.via == "compute" else failure
    return _status_code(head), str(failure or "")


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
                raise JobEnded(ended_early(record, log_tail(hops, record, 30)))
        if info.running:
            ready, unreachable = _ready(hops, record, info)
            if ready:
                state.save(settings.state_path, record)
                return record
            # Jupyter has written its runtime file, so it listens: a refused channel means this mode's
            # path to it is closed on this site, which waiting will not fix.
            unreachable_since = (unreachable_since or time.monotonic()) if unreachable else None
            if unreachable_since and time.monotonic() - unreachable_since > 15:
                others = _other_modes(record.via)
                raise LabError(f"Jupyter runs on {record.node} but {record.remote_host}:{record.remote_port} "
                               f"cannot be reached via {record.via} ({unreachable}); set lab.via to one of: "
                               f"{others}.")
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


def _ready(hops: Hops, record: LabRecord, info: slurm.JobInfo) -> tuple[bool, str]:
    """(Jupyter answers with 200, why its address could not be reached -- "" if it could)."""
    runtime = _runtime_info(hops, record)
    if not runtime:
        return False, ""
    record.node = info.node
    record.jupyter_port = int(runtime["port"])
    if not record.node_addr:
        record.node_addr = slurm.node_address(hops.login(), info.node)
    if record.via == "reverse":
        port = _reverse_port(hops, record)
        if not port:
            return False, ""
        record.remote_host, record.remote_port = "127.0.0.1", port
    elif record.via == "login":
        record.remote_host, record.remote_port = runtime.get("hostname") or record.node_addr, record.jupyter_port
    else:
        record.remote_host, record.remote_port = "127.0.0.1", record.jupyter_port
    code, unreachable = http_status(hops, record)
    return code == 200, unreachable


# -- forwards ----------------------------------------------------------------------------------------

@contextmanager
def tunnel(record: LabRecord, hops: Hops, local_port: int | None = None) -> Iterator[Forward]:
    """Forward a local loopback port to the lab's Jupyter for the duration of the ``with`` body: an
    OpenSSH forward on the OpenSSH transport, our Paramiko forwarder otherwise."""
    if not record.remote_port:
        raise LabError(f"lab {record.name!r} has not answered yet: `inv lab.wait --name {record.name}`.")
    port_wanted = record.local_port if local_port is None else local_port
    host, port = record.remote_host, record.remote_port
    if hops.openssh and record.via == "compute":
        def argv(spec: str) -> list[str]:
            return hops.node_ssh(record.node_addr, "-N", "-o", "ExitOnForwardFailure=yes", "-L", spec)

        try:
            with ssh_forward.via_ssh(argv, host, port, port_wanted, f"cannot forward to {record.node}") as fwd:
                yield fwd
        except (HostKeyError, AuthenticationError) as exc:
            raise _unreachable_node(exc) from None
    elif hops.openssh:
        with ssh_forward.on_master(hops.master, host, port, port_wanted) as fwd:
            yield fwd
    else:
        transport = _paramiko_transport(hops, record)
        with Heartbeat(transport, hops.settings.keepalive) as beat, \
                forward_local(transport, host, port, port_wanted) as fwd:
            fwd.alive = beat.alive
            yield fwd


JOB_POLL = 5.0  # seconds between looks at a held lab's job: the forwards stop within about this of its end


def hold(settings: LabSettings, record: LabRecord, on_ready: Callable[[Forward], None],
         stop: threading.Event, log: Callable[[str], None] = print, hops: Hops | None = None,
         interactive: bool = True, backoff: Backoff = Backoff()) -> None:
    """Hold the forwards until ``stop`` is set or the job ends, warning before its time limit.

    A dropped connection is reopened on the same local port, within the site-friendly limits of
    ``backoff``; a first attempt that fails is an error at once (a bad start is not a drop). ``hops``, if
    given, is used for the first attempt (no new login).
    """
    port = record.forward_port or record.local_port
    watch = JobWatch(record.name, record.job_id, log)
    failures, connected_once = 0, False
    failing_since: float | None = None
    waiting_since: float | None = None
    while not stop.is_set():
        current, hops = hops or Hops(settings, interactive=interactive), None
        last_attempt = time.monotonic()
        try:
            with current, tunnel(record, current, port) as fwd:
                port = fwd.port
                failures, failing_since, connected_once, waiting_since = 0, None, True, None
                on_ready(fwd)
                if _held(current, record, fwd, watch, stop, log):
                    return
        except PromptNeeded as exc:
            waiting_since = waiting_since or time.monotonic()
            if not connected_once or time.monotonic() - waiting_since > LOGIN_WAIT:
                raise
            log(f"{exc} Waiting for that login.")
            _await_login(settings, stop, waiting_since + LOGIN_WAIT)
            continue
        except (LabError, OSError, EOFError, paramiko.SSHException) as exc:
            # Any failure of the connection itself (SFTP and Paramiko raise their own) is a drop too.
            if not connected_once:
                raise exc if isinstance(exc, LabError) else ConnectError(f"{exc or type(exc).__name__}") from None
            failures += 1
            failing_since = failing_since or last_attempt
            if backoff.exhausted(time.monotonic() - failing_since):
                raise ConnectError(f"{exc}; gave up after {backoff.give_up_after / 60:.0f} minutes of trying to "
                                   f"reconnect: `inv lab.tunnel --name {record.name}` to try again.") from None
            delay = backoff.delay(failures, time.monotonic() - last_attempt)
            log(f"{exc}; retrying in {delay:.0f} s")
            stop.wait(delay)
            continue
        delay = backoff.delay(0, time.monotonic() - last_attempt)
        if delay and not stop.is_set():
            log(f"reconnecting in {delay:.0f} s (at most one login per {backoff.min_interval:.0f} s)")
            stop.wait(delay)


def _held(hops: Hops, record: LabRecord, fwd: Forward, watch: JobWatch, stop: threading.Event,
          log: Callable[[str], None]) -> bool:
    """Watch a held forward and its job; True once the job has ended, False when the connection drops.

    squeue runs beside the watch, never in its way: over a hop that just died it would block until its
    timeout, while the forward's own liveness check knows within seconds.
    """
    timeout = hops.settings.connect_timeout + 10
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="squeue")
    try:
        pending: Future | None = None
        next_look = 0.0
        last_problem = ""
        refused = len(fwd.errors)
        while not stop.wait(1.0):
            if not fwd.alive():
                log("connection to the cluster dropped; reconnecting")
                return False
            if len(fwd.errors) > refused:  # Jupyter refused a channel: its job may have just ended
                refused, next_look = len(fwd.errors), 0.0
            if pending is None and time.monotonic() >= next_look:
                pending = pool.submit(slurm.query, hops.login(), record.job_id, timeout)
            if pending is None or not pending.done():
                continue
            try:
                info = pending.result()
            except SchedulerError as exc:  # the scheduler could not be asked: that says nothing about the job
                if str(exc) != last_problem:
                    log(str(exc))
                last_problem = str(exc)
                continue
            finally:
                pending, next_look = None, time.monotonic() + JOB_POLL
            last_problem = ""
            if not info.active:
                watch.ended(slurm.end_reason(hops.login(), record.job_id, log_tail(hops, record, 30)))
                return True
            watch.update(info)
        return False
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # a squeue stuck on a dead hop is not waited for


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


def check_url(record: LabRecord, port: int, timeout: float = 10) -> int:
    """HTTP status of /api/status through the local forward (0 if nothing answers)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(_status_request("127.0.0.1", record.token))
            return _status_code(sock.recv(64))
    except OSError:
        return 0


def forward_alive(record: LabRecord) -> bool:
    return alive(record.forward_pid, record.forward_started)


def spawn_forward(settings: LabSettings, record: LabRecord) -> subprocess.Popen:
    """Start the background forward process now. It logs in (riding the master) while Jupyter starts, and
    opens the forwards as soon as the record says where Jupyter answers: ``lab.start --detach`` then ends
    a moment after Jupyter answers, not a whole process start later."""
    log = state.log_path(settings.state_path, record.name)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    # The child must import this very package, installed or not.
    here = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))}
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "fabfile_lib.forward_process", record.name, str(settings.state_path)],
            stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, start_new_session=True, close_fds=True, env=env)
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
        if current.forward_pid == proc.pid and current.forward_port and check_url(current, current.forward_port) == 200:
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


def _end_forward_process(record: LabRecord) -> bool:
    if not forward_alive(record):
        return False
    terminate(record.forward_pid, started=record.forward_started)
    return True


def stop_detached(settings: LabSettings, record: LabRecord) -> bool:
    """Stop the lab's background forward and forget it in the record; the job keeps running."""
    stopped = _end_forward_process(record)
    if state.exists(settings.state_path, record.name):
        current = state.load(settings.state_path, record.name)
        current.forward_pid, current.forward_started, current.forward_port = 0, "", 0
        state.save(settings.state_path, current)
    return stopped


# -- status, logs, cancel ----------------------------------------------------------------------------

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
    info = slurm.query(hops.login(), record.job_id, timeout=hops.settings.connect_timeout + 10)
    forwarding = forward_alive(record)
    port = record.forward_port if forwarding else record.local_port
    why = "" if info.active else slurm.end_reason(hops.login(), record.job_id, log_tail(hops, record, 30))
    return LabStatus(record.name, record.job_id, info.state, info.reason, info.node or record.node,
                     info.time_left, record.via, record.remote_port, record.jupyter_port, port,
                     record.url(port) if port else "", forwarding, record.remote_dir, info.end, why)


def logs(record: LabRecord, hops: Hops) -> str:
    return log_tail(hops, record, lines=10_000)


def cancel(settings: LabSettings, record: LabRecord, hops: Hops, forget: bool = True) -> None:
    """End the job, the background forward, the lab's directory on the cluster and (``forget``) the local
    record."""
    _end_forward_process(record)
    login = hops.login()
    slurm.cancel(login, record.job_id)
    deadline = time.monotonic() + 20
    while slurm.query(login, record.job_id).active and time.monotonic() < deadline:
        time.sleep(0.5)
    if lab_dir.PATTERN.match(record.remote_dir):  # never rm -rf anything the tool did not make
        run(login, ["rm", "-rf", "--", record.remote_dir])
    if forget:
        state.remove(settings.state_path, record.name)


# -- from any machine: labs found on the cluster ------------------------------------------------------

@dataclass(frozen=True)
class RemoteLab:
    """A lab found in the remote directory, with its job as squeue sees it (state ENDED if not listed)."""

    meta: lab_dir.LabMeta
    job: slurm.JobInfo

    @property
    def active(self) -> bool:
        return self.job.active


def remote_labs(settings: LabSettings, hops: Hops) -> list[RemoteLab]:
    """The user's labs under ``lab.remote_dir`` on this cluster, joined with squeue (oldest first)."""
    metas = lab_dir.find(hops, settings.remote_dir)
    jobs = slurm.my_jobs(hops.login(), timeout=settings.connect_timeout + 10) if metas else {}
    return [RemoteLab(m, jobs.get(m.job_id, slurm.JobInfo(m.job_id, "ENDED"))) for m in metas]


def find_remote(settings: LabSettings, hops: Hops, name: str | None = None, job_id: str | None = None) -> RemoteLab:
    """The lab named ``name`` (its newest live one) or with job ``job_id``, found on the cluster."""
    found = [lab for lab in remote_labs(settings, hops)
             if (job_id and lab.meta.job_id == str(job_id)) or (not job_id and lab.meta.name == name)]
    what = f"job {job_id}" if job_id else f"named {name!r}"
    if not found:
        raise LabError(f"no lab {what} on {settings.login} (under {settings.remote_dir}): "
                       "`inv lab.list --cluster` lists the labs there.")
    live = [lab for lab in found if lab.active]
    return (live or found)[-1]


def rebuild(settings: LabSettings, hops: Hops, found: RemoteLab) -> LabRecord:
    """A local record for a lab found on the cluster, its token read over SFTP from its 0600 file. The
    cluster is this machine's config; the lab's own choices (name, mode) come from its ``lab.json``."""
    meta = found.meta
    token = (lab_dir.read(hops, meta.remote_dir, batch_script.TOKEN_FILE) or "").strip()
    if not token:
        raise LabError(f"the token of lab {meta.name!r} cannot be read in {meta.remote_dir} on {settings.login}.")
    here = LabSettings.from_config({**asdict(settings), "name": meta.name, "via": meta.via,
                                    "reverse_target": meta.reverse_target})
    return LabRecord(name=meta.name, settings=asdict(here), job_id=meta.job_id, remote_dir=meta.remote_dir,
                     token=token, via=meta.via, local_port=settings.local_port, url_path=meta.url_path,
                     created=meta.created)


def attach(settings: LabSettings, hops: Hops, name: str | None = None, job_id: str | None = None,
           progress: Progress | None = None, timeout: float | None = None) -> LabRecord:
    """Record a lab found on the cluster on this machine, once Jupyter answers (``lab.tunnel`` then
    forwards to it). A lab already recorded here under that name must be the same job."""
    found = find_remote(settings, hops, name, job_id)
    if not found.active:
        raise JobEnded(f"lab {found.meta.name!r} was found but its job {found.meta.job_id} has ended: "
                       f"`inv lab.cancel --job {found.meta.job_id}` removes its files.")
    if state.exists(settings.state_path, found.meta.name):
        mine = state.load(settings.state_path, found.meta.name)
        if mine.job_id != found.meta.job_id:
            raise LabError(f"a different lab named {found.meta.name!r} (job {mine.job_id}) is recorded here: "
                           f"`inv lab.cancel --name {found.meta.name}` or `inv lab.status` first.")
        if mine.remote_port:
            return mine
    record = rebuild(settings, hops, found)
    here = settings_for(record, state_dir=settings.state_dir)
    state.save(settings.state_path, record)
    try:
        return wait(here, record, hops, progress, timeout)
    except BaseException:
        state.remove(settings.state_path, record.name)  # attaching failed: this machine keeps nothing
        raise


def follow_logs(record: LabRecord, hops: Hops, write: Callable[[str], None], stop: threading.Event,
                interval: float = 2.0) -> str:
    """Write the job log as it grows until the job ends (returns why) or ``stop`` is set (returns "")."""
    offset, next_look, ended, tail = 0, 0.0, False, ""
    while True:
        new = lab_dir.read_from(hops, posixpath.join(record.remote_dir, batch_script.JOB_LOG), offset)
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


__all__ = ["LabRecord", "LabStatus", "RemoteLab", "attach", "cancel", "find_remote", "follow_logs", "hold", "logs",
           "rebuild", "remote_labs", "start_detached", "status", "stop_detached", "submit", "tunnel", "wait"]
