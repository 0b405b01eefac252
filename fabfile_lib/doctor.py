"""``lab.doctor``: is everything a lab needs in place? One check per line, each with the fix when it fails.

The checks follow the path of ``lab.start`` -- ssh config, hops and host keys, Slurm, the partition,
the remote directory, the environment -- and stop at the first hop that cannot be passed (everything
after it would only repeat that failure). ``job=True`` adds what only a job can tell: that the node sees
the remote directory and finds ``jupyter`` after the environment's setup.
"""

from __future__ import annotations

import posixpath
import secrets
import shlex
import time
from collections.abc import Iterator
from dataclasses import dataclass

from . import batch_script, commands, lab_dir, slurm
from .errors import LabError
from .hops import Hops, bash_script, choose_transport, run_command
from .settings import LabSettings


@dataclass(frozen=True)
class Check:
    ok: bool | None  # None: not checked (says why)
    what: str
    detail: str = ""
    fix: str = ""


def run_checks(settings: LabSettings, job: bool = False) -> Iterator[Check]:
    """Each check as it is made (a slow hop shows where it is slow)."""
    path = settings.ssh_config_path
    yield Check(True, "ssh config", str(path) if path else "none: ssh's defaults")
    with Hops(settings) as hops:
        try:
            login = hops.login()
        except LabError as exc:
            yield Check(False, f"login node {settings.login}", str(exc),
                        "fix the hop or its host key as the message says, then run lab.doctor again")
            return
        jumps = _jumps(hops, settings)
        for jump in jumps:  # passed on the way to the login node, which proves them
            yield Check(True, f"jump host {jump}", "passed, host key verified")
        through = f" through {', '.join(jumps)}" if jumps else ""
        yield Check(True, f"login node {settings.login}", f"reached{through} ({choose_transport(settings)}), "
                    "host key verified")
        yield from _slurm(hops, settings)
        base = yield from _remote_dir(hops, settings)
        yield _program_on_login(hops, settings)
        if not job:
            yield Check(None, "compute node", f"not checked: `{commands.run('doctor')} --job` runs a one-minute job")
            return
        if base:
            yield from _job(hops, settings, base, login)


def _jumps(hops: Hops, settings: LabSettings) -> list[str]:
    """The hops before the login node, as the config names them (a ProxyCommand counts as one)."""
    if settings.jump:
        return [settings.jump]
    spec = hops.login_spec()
    if spec.proxy_jump:
        return [h for h in spec.proxy_jump.split(",") if h]
    return [f"(ProxyCommand {spec.proxy_command.split()[-1]})"] if spec.proxy_command else []


def _slurm(hops: Hops, settings: LabSettings) -> Iterator[Check]:
    result = run_command(hops.login(), "for c in sbatch squeue scancel sinfo; do command -v $c >/dev/null || "
                                       "echo missing $c; done; sbatch --version", timeout=settings.connect_timeout + 10)
    missing = [ln.split()[1] for ln in result.stdout.splitlines() if ln.startswith("missing ")]
    if missing:
        yield Check(False, "Slurm on the login node", f"not found: {', '.join(missing)}",
                    "lab.login must be a node where Slurm's commands run")
        return
    yield Check(True, "Slurm on the login node", result.stdout.strip().splitlines()[-1])
    out = run_command(hops.login(), "sinfo -h -o '%P %a'", timeout=settings.connect_timeout + 10).stdout
    names = {line.split()[0].rstrip("*"): line for line in out.splitlines() if line.strip()}
    wanted = str(settings.sbatch.get("partition") or "")
    if not wanted:
        default = next((n for n, line in names.items() if line.split()[0].endswith("*")), "")
        yield Check(True, "partition", f"the site's default ({default or 'none marked'})")
        return
    missing = [p for p in wanted.split(",") if p not in names]
    if missing:
        yield Check(False, f"partition {','.join(missing)}", f"does not exist (sinfo lists: {', '.join(names)})",
                    "set lab.sbatch.partition, a profile's, or --partition to one of those")
    else:
        yield Check(True, f"partition {wanted}", "exists")


def _remote_dir(hops: Hops, settings: LabSettings):
    try:
        base = lab_dir.base(hops, settings.remote_dir)
        # What a start does there: a new 0700 directory with a file in it (then removed).
        probe = posixpath.join(base, f".doctor-{secrets.token_hex(4)}")
        lab_dir.create(hops, base, probe, {"probe": "probe"}, then='cd / && rm -rf -- "$2"')
        mode = hops.login().sftp().stat(base).st_mode & 0o777
    except (LabError, OSError) as exc:
        yield Check(False, f"remote directory {settings.remote_dir}", f"not writable: {exc}",
                    "set lab.remote_dir to a directory of yours on a file system the nodes share")
        return ""
    yield Check(True, f"remote directory {base}", f"writable, mode {mode:o} (each lab gets a new 0700 directory "
                "in it; the tool changes the mode of no directory it did not make)")
    return base


def _setup_script(settings: LabSettings) -> str:
    return "\n".join([batch_script.LAB_FAIL, *batch_script.setup(settings), *batch_script.find_program(settings),
                      'echo "$LAB_PROGRAM"'])


def _program_on_login(hops: Hops, settings: LabSettings) -> Check:
    program = settings.app_spec.program
    script = _setup_script(settings)
    result = run_command(hops.login(), bash_script(f"exec </dev/null 2>&1\n{script}") + " </dev/null",
                         timeout=settings.connect_timeout + 60)
    lines = [ln for ln in result.stdout.splitlines() if ln.strip()]
    if result.exited == 0 and lines:
        return Check(True, f"`{program}` on the login node", f"after lab.env and lab.setup: {lines[-1]}")
    why = next((ln.removeprefix("fabfile-lab: error: ") for ln in reversed(lines) if "fabfile-lab: error:" in ln),
               lines[-1] if lines else f"exit {result.exited}")
    return Check(False, f"`{program}` on the login node", why,
                 "fix lab.env or lab.setup (a site may provide it only on compute nodes: check with --job)")


def _job(hops: Hops, settings: LabSettings, base: str, login) -> Iterator[Check]:
    """A one-minute job: does the node see the remote directory, and find the program after setup?"""
    where = posixpath.join(base, f"doctor-{secrets.token_hex(4)}")
    marker = secrets.token_hex(8)
    files = {"marker": marker, "doctor.sh": batch_script.doctor(settings, where)}
    job_id = ""
    try:  # made, written and submitted as a lab is (lab.submit)
        submitted = lab_dir.create(hops, base, where, files,
                                   then=slurm.sbatch_command(posixpath.join(where, "doctor.sh")))
        job_id = slurm.job_id_of(submitted)
        deadline = time.monotonic() + settings.wait_timeout
        info = slurm.query(login, job_id)
        while info.active and time.monotonic() < deadline:
            time.sleep(1)
            info = slurm.query(login, job_id)
        log = lab_dir.read(hops, where, lab_dir.JOB_LOG) or ""
        if info.active:
            yield Check(False, "compute node", f"job {job_id} did not run within {settings.wait_timeout:.0f} s "
                        f"({info.state.lower()} {info.reason})".rstrip(), "raise lab.wait_timeout or pick a "
                        "partition with free nodes")
            return
        node = next((ln.split("=", 1)[1] for ln in log.splitlines() if ln.startswith("node=")), "?")
        shared = f"marker={marker}" in log
        yield Check(shared, f"remote directory on {node}", "shared with the login node" if shared else
                    "not seen by the node", "" if shared else "set lab.remote_dir to a shared file system")
        yield _job_program(settings, log, node)
        yield from _socket_flag(settings, log, node)
    finally:
        if job_id:
            slurm.cancel(login, job_id)
        run_command(login, f"rm -rf -- {shlex.quote(where)}")


def _socket_flag(settings: LabSettings, log: str, node: str) -> Iterator[Check]:
    """Whether the app's program on the node knows the socket flag its declaration gives."""
    app = settings.app_spec
    said = next((ln.split("=", 1)[1] for ln in log.splitlines() if ln.startswith("socket=")), "")
    if not said:
        return
    flag = app.socket_args[0].split("=", 1)[0]
    yield Check(said == "yes", f"{app.title}'s socket flag on {node}", f"`{app.program}` knows {flag}" if said == "yes"
                else f"`{app.program}` does not mention {flag} in its help", "" if said == "yes" else
                "update the app on the cluster, or declare it without socket_args (it then gets a TCP port)")


def _job_program(settings: LabSettings, log: str, node: str) -> Check:
    program = settings.app_spec.program
    found = next((ln.split("=", 1)[1] for ln in log.splitlines() if ln.startswith("program=")), "")
    if found:
        return Check(True, f"`{program}` on {node}", f"after lab.env and lab.setup: {found}")
    why = next((ln.removeprefix("fabfile-lab: error: ") for ln in log.splitlines() if "fabfile-lab: error:" in ln),
               "the job wrote no answer")
    return Check(False, f"`{program}` on {node}", why, "fix lab.env or lab.setup")
