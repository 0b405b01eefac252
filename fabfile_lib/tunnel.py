"""The forwards to a running lab, and holding them: across dropped connections, until the job ends.

:func:`tunnel` opens the forward for the lab's mode (an OpenSSH forward where OpenSSH carries the hops,
the Paramiko forwarder otherwise) for a ``with`` body. :func:`hold` keeps it: it reopens a dropped
connection on the same local port within site-friendly limits, waits for a login the user has to give,
watches the job, warns before its time limit, and returns once it has ended.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

import paramiko

from . import lab_dir, master, modes, probes, slurm, ssh_forward
from .errors import AuthenticationError, ConnectError, HostKeyError, LabError, PromptNeeded, SchedulerError
from .forwards import Forward, Heartbeat, forward_local
from .hops import Hops, choose_transport
from .reconnect import Backoff
from .settings import LabSettings
from .state import LabRecord
from .watch import JobWatch

_log = logging.getLogger(__name__)
Log = Callable[[str], None]
LOGIN_WAIT = 30 * 60  # how long a held forward waits for the user to log in again before it gives up


@contextmanager
def tunnel(record: LabRecord, hops: Hops, local_port: int | None = None) -> Iterator[Forward]:
    """Forward a local loopback port to the lab's Jupyter for the duration of the ``with`` body: an
    OpenSSH forward on the OpenSSH transport, our Paramiko forwarder otherwise."""
    if not record.remote_port:
        raise LabError(f"lab {record.name!r} has not answered yet: `inv lab.wait --name {record.name}`.")
    port_wanted = record.local_port if local_port is None else local_port
    host, port = record.remote_host, record.remote_port
    if hops.openssh and modes.mode(record.via).through_node:
        def argv(spec: str) -> list[str]:
            return hops.node_ssh(record.node_addr, "-N", "-o", "ExitOnForwardFailure=yes", "-L", spec)

        try:
            with ssh_forward.via_ssh(argv, host, port, port_wanted, f"cannot forward to {record.node}") as fwd:
                yield fwd
        except (HostKeyError, AuthenticationError) as exc:
            raise probes.unreachable_node(exc) from None
    elif hops.openssh:
        with ssh_forward.on_master(hops.master, host, port, port_wanted) as fwd:
            yield fwd
    else:
        transport = probes.far_transport(hops, record)
        with Heartbeat(transport, hops.settings.keepalive) as beat, \
                forward_local(transport, host, port, port_wanted) as fwd:
            fwd.alive = beat.alive
            yield fwd


JOB_POLL = 5.0  # seconds between looks at a held lab's job: the forwards stop within about this of its end

TICK = 1.0  # seconds between looks at a held forward's liveness (squeue is asked every JOB_POLL)


def hold(settings: LabSettings, record: LabRecord, on_ready: Callable[[Forward], None],
         stop: threading.Event, log: Log = _log.info, hops: Hops | None = None,
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
          log: Log) -> bool:
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
        asked_at_refusals = refused = fwd.refused()
        while not stop.wait(TICK):
            if not fwd.alive():
                log("connection to the cluster dropped; reconnecting")
                return False
            if fwd.refused() > refused:  # Jupyter refused a connection: its job may have just ended
                refused, next_look = fwd.refused(), 0.0
            if pending is None and time.monotonic() >= next_look:
                pending, asked_at_refusals = pool.submit(slurm.query, hops.login(), record.job_id, timeout), refused
            if pending is None or not pending.done():
                continue
            try:
                info = pending.result()
            except SchedulerError as exc:  # the scheduler could not be asked: that says nothing about the job
                if str(exc) != last_problem:
                    log(str(exc))
                last_problem = str(exc)
                continue
            finally:  # a refusal while squeue ran asks again at once: that answer may predate it
                pending = None
                next_look = 0.0 if refused > asked_at_refusals else time.monotonic() + JOB_POLL
            last_problem = ""
            if not info.active:
                tail = lab_dir.log_tail(hops, record.remote_dir, 30)
                watch.ended(slurm.end_reason(hops.login(), record.job_id, tail))
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

