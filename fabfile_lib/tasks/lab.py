"""``inv lab.*``: JupyterLab on a compute node, in the local browser, across the jump host."""

from __future__ import annotations

import json
import threading
import time
import webbrowser

from invoke import Collection, task

from .. import lab, master, state
from ..errors import ConfigError, LabError, WaitTimeout
from ..hops import Hops, choose_transport
from ..settings import DEFAULTS, LabSettings, local_lab
from ..slurm import JobInfo
from ._errors import lab_config, user_errors

NAME = "lab name, so several labs can run at once (default: lab.name from config)"


def _settings(c, name: str | None = None, **overrides) -> LabSettings:
    return LabSettings.from_config(lab_config(c), name=name, **overrides)


def _record(c, name: str | None) -> tuple[LabSettings, state.LabRecord]:
    """A recorded lab and the settings it was started with (its cluster does not change with the config)."""
    state_dir, lab_name = local_lab(lab_config(c), name)
    record = state.load(state_dir, lab_name)
    return lab.settings_for(record, state_dir=str(state_dir)), record


def _progress(info: JobInfo) -> None:
    why = f" ({info.reason})" if info.reason else ""
    where = f" on {info.node}" if info.node and info.state == "RUNNING" else ""
    extra = f", expected start {info.start}" if info.state == "PENDING" and info.start not in ("", "N/A") else ""
    print(f"job {info.job_id}: {info.state.lower()}{why}{where}{extra}", flush=True)


def _hints(record: state.LabRecord) -> None:
    print(f"the job keeps running. Re-attach: inv lab.tunnel --name {record.name}   "
          f"End it: inv lab.cancel --name {record.name}")


def _detached(settings: LabSettings, record: state.LabRecord, browser: bool, proc=None) -> None:
    record = lab.start_detached(settings, record, proc=proc)
    print(f"JupyterLab: {record.url()}")
    if browser:
        webbrowser.open(record.url())


def _foreground(settings: LabSettings, record: state.LabRecord, browser: bool, hops: Hops | None = None) -> None:
    stop = threading.Event()

    def ready(fwd) -> None:
        print(f"JupyterLab: {record.url(fwd.port)}", flush=True)
        print("forwarding; Ctrl-C stops the forwards (the job keeps running)", flush=True)
        if browser:
            webbrowser.open(record.url(fwd.port))

    try:
        lab.hold(settings, record, ready, stop, hops=hops)
    except KeyboardInterrupt:
        stop.set()
        print()
        _hints(record)


@task(help={"name": NAME})
@user_errors
def submit(c, name=None):
    """Upload the launch script into a private directory on the cluster and sbatch it."""
    settings = _settings(c, name)
    with Hops(settings) as hops:
        record = lab.submit(settings, hops)
    print(f"submitted job {record.job_id} (lab {record.name}, via {record.via})")


@task(help={"name": NAME, "timeout": "seconds to wait (default: lab.wait_timeout)"})
@user_errors
def wait(c, name=None, timeout=None):
    """Wait until the job runs and Jupyter answers, showing state and pending reason meanwhile."""
    limit = _seconds("--timeout", timeout)
    settings, record = _record(c, name)
    with Hops(settings) as hops:
        try:
            record = lab.wait(settings, record, hops, _progress, limit)
        except WaitTimeout as exc:
            raise LabError(f"{exc}; the job and the lab are kept: `inv lab.wait --name {record.name}` to wait "
                           f"longer, `inv lab.cancel --name {record.name}` to end it.") from None
    print(f"Jupyter answers on {record.node}:{record.jupyter_port} (job {record.job_id})")


def _seconds(option: str, value) -> float | None:
    if value in (None, ""):
        return None
    try:
        seconds = float(value)
    except ValueError:
        raise ConfigError(f"{option} must be a number of seconds, not {value!r}.") from None
    if seconds <= 0:
        raise ConfigError(f"{option} must be more than 0 seconds.")
    return seconds


@task(help={"name": NAME, "detach": "hold the forwards in a background process and return",
            "stop": "stop the background forwards of this lab (the job keeps running)",
            "no_browser": "do not open the browser"})
@user_errors
def tunnel(c, name=None, detach=False, stop=False, no_browser=False):
    """Open the forwards to a running lab; hold them until Ctrl-C (or --detach / --stop).

    The forwards listen on 127.0.0.1 and ::1 only. A dropped connection is reopened (bounded retries);
    the forwards stop by themselves when the job ends.
    """
    settings, record = _record(c, name)
    if stop:
        stopped = lab.stop_detached(settings, record)
        print(f"stopped the forwards of lab {record.name}" if stopped else f"lab {record.name} had no forwards")
        return
    if detach:
        _detached(settings, record, browser=not no_browser)
        return
    if lab.forward_alive(record):
        raise LabError(f"lab {record.name} is already forwarded in the background: {record.url()} "
                       f"(`inv lab.tunnel --name {record.name} --stop` to stop it).")
    _foreground(settings, record, browser=not no_browser)


@task(help={"name": NAME})
@user_errors
def open(c, name=None):  # noqa: A001 - the task is named for what it does
    """Open the lab's URL in the browser."""
    _, record = _record(c, name)
    if not lab.forward_alive(record):
        raise LabError(f"lab {record.name} has no open forwards: `inv lab.tunnel --name {record.name} --detach`.")
    print(record.url())
    webbrowser.open(record.url())


@task(help={"name": NAME, "no_browser": "print the URL only", "detach": "return once the URL answers, "
            "holding the forwards in a background process", "via": "compute | login | reverse (default: lab.via)",
            "local_port": "local port (0 = any free one; default: lab.local_port)"})
@user_errors
def start(c, name=None, no_browser=False, detach=False, via=None, local_port=None):
    """Submit, wait for Jupyter, open the forwards and the browser: JupyterLab in one command.

    Prints the job's state and pending reason while it waits, then the URL (with its token). In the
    foreground, Ctrl-C while the job is pending cancels it (nothing is lost); once Jupyter answers, Ctrl-C
    stops only the forwards and prints how to re-attach (lab.tunnel) or end the lab (lab.cancel).
    Cluster, sbatch options, setup lines and command come from the `lab` config (invoke.yaml, inv -f).
    """
    settings = _settings(c, name, via=via, local_port=local_port)
    with Hops(settings) as hops:
        record = lab.submit(settings, hops)
        print(f"submitted job {record.job_id} (lab {record.name}, via {record.via})", flush=True)
        # The background forward gets ready while the job starts (it logs in by itself, riding the master).
        early = lab.spawn_forward(settings, record) if detach else None
        try:
            record = lab.wait(settings, record, hops, _progress)
        except (LabError, KeyboardInterrupt) as exc:
            # Not yet answering: nothing is lost by cancelling, and nothing is left behind.
            if early:
                early.terminate()
            lab.cancel(settings, record, hops)
            raise LabError(_after_cancel(exc, record, settings)) from None
        if detach:
            hops.close()
            _detached(settings, record, browser=not no_browser, proc=early)
        else:
            _foreground(settings, record, browser=not no_browser, hops=hops)


def _after_cancel(exc: BaseException, record: state.LabRecord, settings: LabSettings) -> str:
    """What went wrong, and what the tool did about it: the job is cancelled and nothing is kept."""
    if isinstance(exc, KeyboardInterrupt):
        return f"interrupted: job {record.job_id} cancelled, nothing left behind."
    if isinstance(exc, WaitTimeout):
        return (f"{exc}; job {record.job_id} was cancelled and nothing kept: raise lab.wait_timeout (now "
                f"{settings.wait_timeout:.0f} s) and start again, or use `inv lab.submit` then `inv lab.wait`.")
    return f"{exc} (job {record.job_id} cancelled, nothing kept)"


def _statuses(c, names) -> list[lab.LabStatus]:
    results = []
    for lab_name in names:
        settings, record = _record(c, lab_name)
        with Hops(settings) as hops:
            results.append(lab.status(record, hops))
    return results


def _print_statuses(results: list[lab.LabStatus]) -> None:
    if not results:
        print("no labs recorded; start one with `inv lab.start`")
    for st in results:
        if st.ended_because:
            print(f"{st.name}: job {st.job_id} has ended: {st.ended_because}. `inv lab.cancel --name {st.name}` "
                  "removes its files and record.")
            continue
        reason = f" ({st.reason})" if st.reason else ""
        ends = f" (ends {st.end.replace('T', ' ')})" if st.end else ""
        print(f"{st.name}: job {st.job_id} {st.state.lower()}{reason}, node {st.node or '-'}, "
              f"time left {st.time_left or '-'}{ends}, via {st.via}")
        print(f"  {st.url if st.forwarding else 'no forwards open: inv lab.tunnel --name ' + st.name}")


@task(help={"name": NAME + "; without it, all labs (a JSON list)", "json": "print JSON"})
@user_errors
def status(c, name=None, json_=False):
    """State, node, time left and URL of a lab (or of all labs), from the record and squeue."""
    state_dir, lab_name = local_lab(lab_config(c), name)
    results = _statuses(c, [lab_name] if name else state.names(state_dir))
    if json_:
        print(json.dumps(results[0].to_dict() if name else [r.to_dict() for r in results], indent=2))
    else:
        _print_statuses(results)


@task
@user_errors
def list(c):  # noqa: A001
    """Every lab recorded on this machine, with its job's state from squeue."""
    _print_statuses(_statuses(c, state.names(local_lab(lab_config(c))[0])))


@task(help={"name": NAME})
@user_errors
def logs(c, name=None):
    """Print the job's log."""
    settings, record = _record(c, name)
    with Hops(settings) as hops:
        print(lab.logs(record, hops))


@task(help={"name": NAME})
@user_errors
def cancel(c, name=None):
    """scancel the job, stop the forwards, remove the lab's remote directory and local record."""
    settings, record = _record(c, name)
    with Hops(settings) as hops:
        lab.cancel(settings, record, hops)
    print(f"lab {record.name}: job {record.job_id} cancelled, forwards stopped, files removed")


def _cluster_settings(c, name: str | None) -> LabSettings:
    """The cluster of lab ``name`` if it is recorded, else of the current config."""
    state_dir, lab_name = local_lab(lab_config(c), name)
    if name and state.exists(state_dir, lab_name):
        return _record(c, name)[0]
    return _settings(c, name)


@task(help={"name": "use the cluster this lab was started on (default: the cluster of the current config)"})
@user_errors
def login(c, name=None):
    """Log in to the cluster once (OpenSSH asks for passphrase, code or touch) and keep the login.

    Every later task and the background forwards ride this login (an OpenSSH ControlMaster) and ask for
    nothing while it lives: lab.persist after its last use (default 8h), or until `inv lab.logout`.
    """
    settings = _cluster_settings(c, name)
    if choose_transport(settings) != "openssh":
        raise LabError("lab.login keeps an OpenSSH ControlMaster, which this machine's ssh (or lab.transport: "
                       "paramiko) cannot hold: each task logs in by itself and asks at most once per hop.")
    plan = master.plan(settings)
    started = plan.open(interactive=True)
    print(login_summary(plan, started))


def login_summary(plan: master.Master, started: bool) -> str:
    info = plan.check()
    since = time.strftime("%H:%M", time.localtime(info.created)) if info.created else "earlier"
    what = "logged in" if started else "already logged in"
    if plan.user_managed:
        return (f"{what} to {plan.label} through your own ControlMaster (pid {info.pid}); it lives as your "
                "ssh config's ControlPersist says. `inv lab.logout` ends it.")
    if plan.persist == "0":
        return f"{what} to {plan.label} (pid {info.pid}); lab.persist is 0, so `inv lab.logout` ends it."
    return (f"{what} to {plan.label} (master pid {info.pid}, since {since}); it stays until {plan.persist} "
            f"after its last use (lab.persist), or `inv lab.logout`.")


@task(help={"name": "use the cluster this lab was started on (default: the cluster of the current config)"})
@user_errors
def logout(c, name=None):
    """End the kept login to the cluster (the OpenSSH master); the next task logs in again."""
    settings = _cluster_settings(c, name)
    if choose_transport(settings) != "openssh":
        print("no login is kept on this transport")
        return
    plan = master.plan(settings)
    closed = plan.close(logout=True)
    print(f"logged out of {plan.label}" if closed else f"no login to {plan.label} was open")
    if lab.forwarding_labs(local_lab(lab_config(c))[0]):
        print("background forwards wait for the next login (`inv lab.login`) before they answer again")


ns = Collection("lab", start, submit, wait, tunnel, open, status, list, logs, cancel, login, logout)
# sbatch is left out on purpose: a mapping here would make Invoke itself fail, with a traceback, on a user's
# file that gives a string; LabSettings adds its defaults and says what is wrong in one line.
ns.configure({"lab": {k: v for k, v in DEFAULTS.items() if k != "sbatch"}})
