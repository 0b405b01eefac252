"""The lab tasks (`inv lab.*`, `fabfile-lab *`): JupyterLab (or another app) on a compute node, in the local browser."""

from __future__ import annotations

import json
import sys
import threading
import time as _time
from typing import TYPE_CHECKING

from invoke import Collection, task
from invoke.exceptions import Exit

from .. import apps, commands, config_trust, lazy, modes, state
from ..errors import ConfigError, LabError, WaitTimeout
from ..settings import DEFAULTS, LabSettings, local_lab, sbatch_options
from ._errors import lab_config, user_errors
from ._progress import QueueDisplay

if TYPE_CHECKING:
    from ..hops import Hops

# Imported when a task first uses them: Paramiko and Fabric come with the hops (lazy.py).
add_port = lazy.Module("fabfile_lib.add_port")
browser_page = lazy.Module("fabfile_lib.browser")
doctor_ = lazy.Module("fabfile_lib.doctor")
hops_ = lazy.Module("fabfile_lib.hops")
ide = lazy.Module("fabfile_lib.ide")
lab = lazy.Module("fabfile_lib.lab")
lab_status = lazy.Module("fabfile_lib.lab_status")  # status and list: not the life cycle
master = lazy.Module("fabfile_lib.master")
remote_labs = lazy.Module("fabfile_lib.remote_labs")
slurm = lazy.Module("fabfile_lib.slurm")
start_ = lazy.Module("fabfile_lib.start")

NAME = "lab name, so several labs can run at once (default: lab.name from config)"
APP = "the web app to run (default: lab.app, jupyterlab; the apps task lists them)"


RESOURCES = {"partition": "sbatch --partition for this run", "time": "sbatch --time, e.g. 2:00:00",
             "cpus": "sbatch --cpus-per-task", "mem": "sbatch --mem, e.g. 16G",
             "gpus": "sbatch --gpus, e.g. 1 or a100:2",
             "account": "sbatch --account", "constraint": "sbatch --constraint", "qos": "sbatch --qos",
             "sbatch": "any other sbatch long option for this run, KEY=VALUE (repeatable); a bare KEY is a flag",
             "profile": "a profile from lab.profiles (the profiles task lists them)"}


def _settings(c, name: str | None = None, profile: str | None = None, sbatch: dict | None = None,
              **overrides) -> LabSettings:
    return LabSettings.from_config(lab_config(c), name=name, profile=profile, sbatch=sbatch, **overrides)


def _run_settings(c, name, profile, extra, resources: dict, **overrides) -> LabSettings:
    """Settings for one run: config, then the profile, then the options given on the command line."""
    return _settings(c, name, profile, sbatch_options(resources, extra or ()), **overrides)


def _out(as_json: bool):
    """Where progress goes: stderr when stdout is for JSON."""
    return sys.stderr if as_json else sys.stdout


def _say(as_json: bool, text: str) -> None:
    print(text, file=_out(as_json), flush=True)


def _record(c, name: str | None) -> tuple[LabSettings, state.LabRecord]:
    """A recorded lab and the settings it was started with (its cluster does not change with the config)."""
    state_dir, lab_name = local_lab(lab_config(c), name)
    record = state.load(state_dir, lab_name)
    return state.settings_of(record, state_dir=str(state_dir)), record


def _hints(record: state.LabRecord, as_json: bool = False) -> None:
    _say(as_json, f"the job keeps running. Re-attach: {commands.run('tunnel')} --name {record.name}   "
                  f"End it: {commands.run('cancel')} --name {record.name}")


def _summary(record: state.LabRecord, port: int, time_left: str = "") -> str:
    """The one JSON object of ``--json``: what a script needs to use the lab."""
    return json.dumps({"name": record.name, "job_id": record.job_id, "node": record.node,
                       "url": record.url(port), "local_port": port, "via": record.via, "time_left": time_left})


def _announce(record: state.LabRecord, port: int, browser: bool, as_json: bool, hops: Hops | None = None) -> None:
    if as_json:
        left = slurm.query(hops.shell(), record.job_id).time_left if hops else ""
        print(_summary(record, port, left), flush=True)
    else:
        print(f"{record.app_spec.title}: {record.url(port)}", flush=True)
    if browser:  # through a private page: the token never goes on the browser's command line
        browser_page.open_lab(state.settings_of(record).state_path, record, port)


def _detached(settings: LabSettings, record: state.LabRecord, browser: bool, as_json: bool = False, *,
              held: bool = False) -> None:
    """Announce the lab held in the background: ``held``, its URL has just answered there (a start), else
    it is asked for and awaited first."""
    record = record if held else lab.start_detached(settings, record)
    if as_json:
        with hops_.Hops(settings) as hops:
            _announce(record, record.forward_port, browser, True, hops)
    else:
        _announce(record, record.forward_port, browser, False)


def _foreground(settings: LabSettings, record: state.LabRecord, browser: bool, hops: Hops | None = None,
                as_json: bool = False) -> None:
    stop = threading.Event()
    announced = False

    def ready(fwd) -> None:
        nonlocal announced
        if announced:  # a reconnect: same URL, no second browser tab, no second JSON object
            _say(as_json, f"forwarding again: {record.url(fwd.port)}")
            return
        announced = True
        _announce(record, fwd.port, browser, as_json, hops)
        _say(as_json, "forwarding; Ctrl-C stops the forwards (the job keeps running)")

    try:
        lab.hold(settings, record, ready, stop, hops=hops, log=lambda m: _say(as_json, m))
    except KeyboardInterrupt:
        stop.set()
        print(file=_out(as_json))
        _hints(record, as_json)


@task(help={"name": NAME, "app": APP, **RESOURCES}, iterable=["sbatch"])
@user_errors
def submit(c, name=None, app=None, profile=None, partition=None, time=None, cpus=None, mem=None, gpus=None,
           account=None, constraint=None, qos=None, sbatch=None):
    """Upload the launch script into a private directory on the cluster and sbatch it."""
    settings = _run_settings(c, name, profile, sbatch, dict(partition=partition, time=time, cpus=cpus, mem=mem,
                             gpus=gpus, account=account, constraint=constraint, qos=qos), app=app)
    with hops_.Hops(settings) as hops:
        record = lab.submit(settings, hops)
    print(f"submitted job {record.job_id} (lab {record.name}, via {record.via})")


@task(help={"name": NAME, "timeout": "seconds to wait (default: lab.wait_timeout)"})
@user_errors
def wait(c, name=None, timeout=None):
    """Wait until the job runs and Jupyter answers, showing state and pending reason meanwhile."""
    limit = _seconds("--timeout", timeout)
    settings, record = _record(c, name)
    with hops_.Hops.for_lab(settings, record.via, record.login_host) as hops, QueueDisplay(sys.stdout) as display:
        try:
            record = lab.wait(settings, record, hops, display, limit)
        except WaitTimeout as exc:
            raise WaitTimeout(f"{exc}; the job and the lab are kept: `{commands.run('wait')} --name {record.name}` "
                              f"to wait longer, `{commands.run('cancel')} --name {record.name}` to end it.") from None
    print(f"{record.app_spec.title} answers on {record.node}, {lab.listens(record)} (job {record.job_id})")


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


@task(help={"name": NAME, "detach": "hold the forwards in the background (one process for all labs) and return",
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
                       f"(`{commands.run('tunnel')} --name {record.name} --stop` to stop it).")
    _foreground(settings, record, browser=not no_browser)


@task(help={
    "target": "what to forward: a port on the node (8787), a port on the login node (login:6006), or a "
              "Unix socket on the node (/path/to.sock); `fabfile-lab forward` takes it as a bare word",
    "name": NAME, "list": "list the lab's added forwards", "stop": "stop the added forward TARGET or LOCAL_PORT",
    "open": "open its URL in the browser", "local_port": "local port (default: any free one)"})
@user_errors
def forward(c, target=None, name=None, list_=False, stop=None, open_=False, local_port=0):
    """Forward one more port of a running lab (a Dask dashboard, TensorBoard...) and print its URL.

    It rides the lab's own connection, held in the background (asked for if it is not yet): it heals with
    it and ends with the lab. A TCP port on the node can be reached by other users of the node too.
    """
    settings, record = _record(c, name)
    if stop:
        gone = add_port.stop(settings, record, str(stop))
        print(f"stopped the forward to {gone.to} (was {gone.url})")
        return
    if list_ or not target:
        entries = lab.added_forwards(record, lab.forward_alive(record))
        if not entries:
            print(f"lab {record.name} has no added forwards: `{commands.run('forward')} --name {record.name} PORT`")
        for entry in entries:
            print(_added_line(entry))
        return
    added = add_port.add(settings, record, str(target), int(local_port or 0))
    shown = lab.added_forwards(state.load(settings.state_path, record.name), True)
    print(next(_added_line(entry) for entry in shown if entry["to"] == added.to))
    if open_:
        browser_page.open_url(added.url)


def _added_line(entry: dict) -> str:
    """One added forward: its URL (or how it fares), what it reaches, who else can reach that."""
    note = f": {entry['note']}" if entry["note"] else ""
    where = entry["url"] or f"127.0.0.1:{entry['local_port']} ({entry['state']}{note})"
    shared = f" (open to {entry['shared_with']})" if entry["shared_with"] else ""
    return f"{where} -> {entry['to']}{shared}"


@task(name="open", help={"name": NAME})
@user_errors
def open_(c, name=None):
    """Open the lab's URL in the browser."""
    settings, record = _record(c, name)
    if not lab.forward_alive(record):
        raise LabError(f"lab {record.name} has no open forwards: "
                       f"`{commands.run('tunnel')} --name {record.name} --detach`.")
    print(record.url())
    browser_page.open_lab(settings.state_path, record, record.forward_port)


@task(help={"name": NAME, "no_browser": "print the URL only", "detach": "return once the URL answers, "
            "holding the forwards in a background process", "via": f"{' | '.join(modes.CHOICES)} (default: lab.via)",
            "local_port": "local port (0 = any free one; default: lab.local_port)",
            "json": "print one JSON object (name, job_id, node, url, local_port, via, time_left) on stdout; "
                    "progress goes to stderr", **RESOURCES}, iterable=["sbatch"])
@user_errors
def start(c, name=None, app=None, no_browser=False, detach=False, via=None, local_port=None, json_=False,
          profile=None, partition=None, time=None, cpus=None, mem=None, gpus=None, account=None, constraint=None,
          qos=None, sbatch=None):
    """Submit, wait for the app, open the forwards and the browser: JupyterLab (or --app) in one command.

    Shows the job's state, pending reason, time waited and expected start while it queues, then the URL
    (with its token). In the foreground, Ctrl-C while the job is pending cancels it (nothing is lost); once
    Jupyter answers, Ctrl-C stops only the forwards and prints how to re-attach (the `tunnel` task) or end
    the lab (`cancel`). Cluster, sbatch options, environment, setup lines and command come from the `lab`
    config (your config file, one given with -f FILE), a --profile, and the resource options for this run.
    """
    settings = _run_settings(c, name, profile, sbatch, dict(partition=partition, time=time, cpus=cpus, mem=mem,
                             gpus=gpus, account=account, constraint=constraint, qos=qos),
                             via=via, local_port=local_port, app=app)
    with hops_.Hops(settings) as hops:
        with QueueDisplay(_out(json_)) as display:
            def next_mode(rec: state.LabRecord, exc: LabError) -> None:
                _say(json_, f"via {rec.via} does not reach {rec.app_title} here ({exc}); job {rec.job_id} "
                            "cancelled, trying the next mode")
                display.restart()

            events = start_.StartEvents(queue=display, next_mode=next_mode, submitted=lambda rec: _say(
                json_, f"submitted job {rec.job_id} (lab {rec.name}, via {rec.via})"))
            started = start_.start(settings, hops, detach=detach, events=events)
        if detach:
            hops.close()
            _detached(started.settings, started.record, browser=not no_browser, as_json=json_, held=started.detached)
        else:
            _foreground(started.settings, started.record, browser=not no_browser, hops=hops, as_json=json_)


def _hops_when_needed(settings: LabSettings) -> Hops:
    """The cluster's hops, made when a step first needs them: labs vouched for by their own paths need none."""
    return lazy.Made(lambda: hops_.Hops(settings), settings=settings)


def _statuses(c, names) -> list[lab_status.LabStatus]:
    """The labs' statuses, one question to Slurm per cluster (labs started on one cluster share it)."""
    by_cluster: dict[str, tuple[LabSettings, list[state.LabRecord]]] = {}
    for lab_name in names:
        settings, record = _record(c, lab_name)
        key = json.dumps([settings.ssh_config, settings.login, settings.jump, settings.transport])
        by_cluster.setdefault(key, (settings, []))[1].append(record)
    found: dict[str, lab_status.LabStatus] = {}
    for settings, records in by_cluster.values():
        with _hops_when_needed(settings) as hops:
            found.update((st.name, st) for st in lab_status.statuses(records, hops))
    return [found[n] for n in names]


def _print_statuses(results: list[lab_status.LabStatus]) -> None:
    if not results:
        print(f"no labs recorded; start one with `{commands.run('start')}`")
    for st in results:
        if st.ended_because:
            what = (f"job {st.job_id} has ended: {st.ended_because}" if st.job_id else
                    "no job: its start was stopped before sbatch answered, and none runs in its directory")
            print(f"{st.name}: {what}. `{commands.run('cancel')} --name {st.name}` removes its files and record.")
            continue
        reason = f" ({st.reason})" if st.reason else ""
        ends = f" (ends {st.end.replace('T', ' ')})" if st.end else ""
        print(f"{st.name}: job {st.job_id} {st.state.lower()}{reason}, node {st.node or '-'}"
              f"{f' ({st.given})' if st.given else ''}, time left {st.time_left or '-'}{ends}, via {st.via}"
              f"{f', {st.listens}' if st.listens else ''}")
        print(f"  {st.url} (answers)" if st.answers else f"  not answering: {st.not_answering}")
        for entry in st.forwards:
            print(f"  forward {_added_line(entry)}")
        if st.jobs:
            active = [j for j in st.jobs if j["state"] in slurm.ACTIVE]
            shown = ", ".join(f"{j['job_id']} {j['state'].lower()}" for j in active) or "all ended"
            print(f"  jobs it started: {len(st.jobs)} ({shown}); they end with the lab")


@task(help={"name": NAME + "; without it, all labs (a JSON list)", "json": "print JSON"})
@user_errors
def status(c, name=None, json_=False):
    """State, node, time left and URL of a lab (or of all labs): from the lab's own path, else squeue."""
    state_dir, lab_name = local_lab(lab_config(c), name)
    if name:
        settings, record = _record(c, name)
        with _hops_when_needed(settings) as hops:
            results = [lab_status.status(record, hops)]
    else:
        results = _statuses(c, state.names(state_dir))
    if json_:
        print(json.dumps(results[0].to_dict() if name else [r.to_dict() for r in results], indent=2))
    else:
        _print_statuses(results)


@task(name="list", help={"cluster": "list the labs found on the cluster (from any machine), with squeue"})
@user_errors
def list_(c, cluster=False):
    """Every lab recorded on this machine, with its job's state from squeue (--cluster: on the cluster)."""
    state_dir = local_lab(lab_config(c))[0]
    if not cluster:
        _print_statuses(_statuses(c, state.names(state_dir)))
        return
    settings = _settings(c)
    with hops_.Hops(settings) as hops:
        found = remote_labs.remote_labs(settings, hops)
    if not found:
        print(f"no labs under {settings.remote_dir} on {settings.login}")
    for item in found:
        meta, job = item.meta, item.job
        mine = state.recorded_job(state_dir, meta.name) == meta.job_id
        left = f", time left {job.time_left}" if job.active and job.time_left else ""
        node = f" on {job.node}" if job.node else ""
        print(f"{meta.name}: job {meta.job_id} {job.state.lower()}{node}{left}, via {meta.via}, "
              f"started {_when(meta.created)} ({'recorded here' if mine else 'not recorded here'})")


def _when(epoch: float) -> str:
    return _time.strftime("%Y-%m-%d %H:%M", _time.localtime(epoch)) if epoch else "?"


@task(help={"name": NAME, "follow": "follow the log until the job ends (or Ctrl-C)"})
@user_errors
def logs(c, name=None, follow=False):
    """Print the job's log (--follow: and what it adds, until the job ends)."""
    settings, record = _record(c, name)
    with hops_.Hops(settings) as hops:
        if not follow:
            print(lab.logs(record, hops))
            return
        try:
            why = lab.follow_logs(record, hops, lambda text: print(text, end="", flush=True), threading.Event())
        except KeyboardInterrupt:
            return
    print(f"job {record.job_id} has ended: {why}")


@task(help={"name": NAME + "; found on the cluster if this machine has no record of it",
            "job": "the lab's job id, instead of --name",
            "keep_jobs": "leave running the Slurm jobs the lab started (by default they end with it)"})
@user_errors
def cancel(c, name=None, job=None, keep_jobs=False):
    """scancel the job, stop the forwards, remove the lab's remote directory and local record.

    Works from any machine: a lab this machine has no record of is found on the cluster (`list --cluster`).
    """
    state_dir, lab_name = local_lab(lab_config(c), name)
    if not job and state.exists(state_dir, lab_name):
        settings, record = _record(c, name)
        with hops_.Hops(settings) as hops:
            done = lab.cancel(settings, record, hops, keep_jobs=keep_jobs)
    else:
        settings = _settings(c, name)
        with hops_.Hops(settings) as hops:
            record = remote_labs.rebuild(settings, hops, remote_labs.find_remote(settings, hops, lab_name, job))
            # A lab of the same name recorded here may be this job (then forget it) or another one (keep it).
            recorded = state.recorded_job(state_dir, record.name)
            if recorded == record.job_id:
                settings, record = _record(c, record.name)
            done = lab.cancel(settings, record, hops, forget=recorded in (record.job_id, ""), keep_jobs=keep_jobs)
    print(f"lab {record.name}: job {record.job_id} cancelled, forwards stopped, files removed")
    if done.jobs_ended:
        print(f"  and the jobs it had started: {' '.join(done.jobs_ended)}")
    if done.jobs_kept:
        print(f"  the jobs it had started keep running (--keep-jobs): {' '.join(done.jobs_kept)}")


@task(help={"name": NAME + " (as found on the cluster)", "job": "the lab's job id, instead of --name",
            "detach": "hold the forwards in a background process and return", "no_browser": "do not open the browser",
            "json": "print one JSON object (name, job_id, node, url, local_port, via, time_left) on stdout"})
@user_errors
def attach(c, name=None, job=None, detach=False, no_browser=False, json_=False):
    """Re-attach to a lab running on the cluster, from any machine: rebuild its record, then tunnel.

    The lab is found in lab.remote_dir on the cluster of the current config; its token is read over SFTP
    from its private file. Then it is like `tunnel` (--detach included).
    """
    settings = _settings(c, name)
    with hops_.Hops(settings) as hops:
        with QueueDisplay(_out(json_)) as display:
            record = remote_labs.attach(settings, hops, None if job else settings.name, job, progress=display)
        if lab.forward_alive(record):
            _announce(record, record.forward_port, not no_browser, json_, hops)
            return
        here = lab.settings_for(record)
        if detach:
            hops.close()
            _detached(here, record, browser=not no_browser, as_json=json_)
        else:
            _foreground(here, record, browser=not no_browser, hops=hops, as_json=json_)


@task
@user_errors
def profiles(c):
    """The profiles in lab.profiles and what each changes (use one with `start --profile NAME`)."""
    config = dict(lab_config(c))
    checkable = {**config, "login": config.get("login") or "-"}  # listing needs no cluster
    LabSettings.from_config(checkable)  # the profiles are valid (lab.profiles' shape included)
    named = config.get("profiles") or {}
    if not named:
        print("no profiles: add them under lab.profiles, e.g. {gpu: {sbatch: {partition: gpu, gpus: 1}}}")
    for profile_name, values in named.items():
        LabSettings.from_config(checkable, profile=profile_name)  # each one must make valid settings
        print(f"{profile_name}: " + ", ".join(f"{k}={json.dumps(v, default=str)}" for k, v in values.items()))


@task(name="apps")
@user_errors
def apps_(c):
    """The web apps a lab can run (`start --app NAME`): the built-in ones and those declared under lab.apps,
    each with how it listens and where it was declared."""
    config = dict(lab_config(c))
    settings = LabSettings.from_config({**config, "login": config.get("login") or "-"})  # listing needs no cluster
    for app in apps.catalogue(apps.declared(settings.apps, where=config_trust.origins("apps"))).values():
        listens = "private socket" if app.has_socket else "TCP port"
        guard = {"none": "no secret (lab.open_apps)"}.get(app.secret, f"secret by {app.secret}")
        default = " (default)" if app.name == settings.app else ""
        print(f"{app.name}{default}: {app.title}, `{app.command}`; {listens}, {guard}; {app.declared}")


@task(help={"job": "also run a one-minute job: the node sees the remote directory and finds jupyter",
            "profile": RESOURCES["profile"], "partition": RESOURCES["partition"]})
@user_errors
def doctor(c, job=False, profile=None, partition=None):
    """Check what a lab needs, one line each (✓/✗ and the fix): ssh config, hops and host keys, Slurm,
    the partition, the remote directory, and that the environment finds jupyter. Exits 1 on any ✗."""
    print_checks(_run_settings(c, None, profile, (), {"partition": partition}), job)


def print_checks(settings: LabSettings, job: bool = False) -> None:
    """Doctor's checks, one line each as they come; Exit 1 if any failed."""
    failed = 0
    for check in doctor_.run_checks(settings, job=job):
        mark = {True: "✓", False: "✗", None: "·"}[check.ok]
        fix = f" -- fix: {check.fix}" if check.fix and check.ok is False else ""
        print(f"{mark} {check.what}: {check.detail}{fix}", flush=True)
        failed += check.ok is False
    if failed:
        raise Exit(f"error: {failed} check{'s' if failed > 1 else ''} failed.", code=1)


@task(help={"name": NAME})
@user_errors
def vscode(c, name=None):
    """Write an ssh config entry for the lab's node (its hops as ProxyJump) for VS Code Remote-SSH and
    other IDEs; print the Include line for ~/.ssh/config and the Jupyter server URL."""
    settings, record = _record(c, name)
    path = ide.write(settings, record)
    print(f"wrote Host {ide.host_alias(record.name)} to {path}")
    print(f"add this line near the top of ~/.ssh/config (once; it covers every lab):\n  "
          f"{ide.include_line(settings.state_path)}")
    print(f"then, in VS Code: Remote-SSH: Connect to Host... -> {ide.host_alias(record.name)}")
    what = "Jupyter server URL (Jupyter: Select Kernel -> Existing Jupyter Server)" if record.app_spec.kernels \
        else f"{record.app_title} URL"
    if lab.forward_alive(record):
        print(f"{what}: {record.url()}")
    elif modes.mode(record.via).loopback and record.app_port:  # Remote-SSH on the node reaches it there
        print(f"{what}, inside the Remote-SSH window: "
              f"http://127.0.0.1:{record.app_port}{record.url_path}{record.app_spec.url_query(record.token)}")
    if not lab.forward_alive(record):
        print(f"for a local URL: {commands.run('tunnel')} --name {record.name} --detach")


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
    nothing while it lives: lab.persist after its last use (default 8h), or until `logout`.
    """
    settings = _cluster_settings(c, name)
    if hops_.choose_transport(settings) != "openssh":
        raise LabError("lab.login keeps an OpenSSH ControlMaster, which this machine's ssh (or lab.transport: "
                       "paramiko) cannot hold: each task logs in by itself and asks at most once per hop.")
    plan = master.plan(settings)
    started = plan.open(interactive=True)
    print(login_summary(plan, started))


def login_summary(plan: master.Master, started: bool) -> str:
    info = plan.check()
    since = _time.strftime("%H:%M", _time.localtime(info.created)) if info.created else "earlier"
    what = "logged in" if started else "already logged in"
    if plan.address.user_managed:
        return (f"{what} to {plan.label} through your own ControlMaster (pid {info.pid}); it lives as your "
                f"ssh config's ControlPersist says. `{commands.run('logout')}` ends it.")
    if plan.address.persist == "0":
        return f"{what} to {plan.label} (pid {info.pid}); lab.persist is 0, so `{commands.run('logout')}` ends it."
    return (f"{what} to {plan.label} (master pid {info.pid}, since {since}); it stays until {plan.address.persist} "
            f"after its last use (lab.persist), or `{commands.run('logout')}`.")


@task(help={"name": "use the cluster this lab was started on (default: the cluster of the current config)"})
@user_errors
def logout(c, name=None):
    """End the kept login to the cluster (the OpenSSH master); the next task logs in again."""
    settings = _cluster_settings(c, name)
    if hops_.choose_transport(settings) != "openssh":
        print("no login is kept on this transport")
        return
    plan, *pinned = master.masters(settings)
    closed = plan.close(logout=True)
    for other in pinned:  # the logins kept to single login nodes (reverse-mode labs) end too
        closed = other.close() or closed
    print(f"logged out of {plan.label}" if closed else f"no login to {plan.label} was open")
    if lab.forwarding_labs(local_lab(lab_config(c))[0]):
        print(f"background forwards wait for the next login (`{commands.run('login')}`) before they answer again")


ns = Collection("lab", start, submit, wait, tunnel, forward, open_, status, list_, logs, cancel, attach, apps_,
                profiles, doctor, vscode, login, logout)
# sbatch is left out on purpose: a mapping here would make Invoke itself fail, with a traceback, on a user's
# file that gives a string; LabSettings adds its defaults and says what is wrong in one line.
ns.configure({"lab": {k: v for k, v in DEFAULTS.items() if k != "sbatch"}})
