"""Slurm on the login node: submit, query, cancel. Every command's words are quoted by ``hops.run``.

``squeue`` failing is not "the job finished" (that is how orphaned servers happen): a query that fails
raises, and only a job that Slurm no longer lists, or lists in a final state, counts as ended.

Every query is a load on slurmctld, which the squeue man page asks programs not to poll. So a query costs
as few RPCs as Slurm allows, and callers ask rarely (``pacing.py``): one job is ``scontrol --local show
job ID`` (one RPC: ``--local`` skips the federation look-up that squeue and scontrol otherwise make each
time); several jobs are one ``squeue --local`` (two RPCs, whatever their number). On a federation, a job
that went to a sibling cluster shows here as REVOKED; it is then asked for federation-wide.

What Slurm prints is data from the cluster, checked where it enters: job ids are digits (``_`` for
array tasks), node names and addresses are host names or IP addresses, or the line is not taken.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import idle_watch, job_resources
from .errors import LabError, SchedulerError
from .job_resources import Resources
from .remote import run, run_command
from .untrusted import host as valid_host
from .untrusted import job_id as valid_job_id

if TYPE_CHECKING:
    from fabric import Connection

# COMPLETING is not active: the job is ending (its processes are being killed), Jupyter is gone.
ACTIVE = {"PENDING", "CONFIGURING", "RUNNING", "RESIZING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD",
          "REQUEUE_FED", "SIGNALING", "STAGE_OUT"}


@dataclass(frozen=True)
class JobInfo:
    job_id: str
    state: str  # squeue's %T, or "ENDED" once squeue no longer lists it
    reason: str = ""
    node: str = ""
    time_left: str = ""
    start: str = ""
    end: str = ""  # the expected end (walltime), squeue's %e
    workdir: str = ""  # squeue's %Z: the lab's directory, which finds a job whose id was never recorded

    @property
    def seconds_left(self) -> float | None:
        return parse_duration(self.time_left)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def running(self) -> bool:
        return self.state == "RUNNING"


def sbatch_command(script_path: str) -> str:
    """The command that submits ``script_path`` (in its lab's directory), its output read by :func:`job_id_of`.
    umask 077 keeps the job log private."""
    return f"umask 077 && sbatch --parsable {shlex.quote(script_path)}"


def job_id_of(result) -> str:
    """The job id ``sbatch --parsable`` printed, or why it submitted nothing."""
    if result.exited != 0:
        lines = [ln for ln in (result.stderr or result.stdout).strip().splitlines() if ln.strip()]
        raise SchedulerError(f"sbatch refused the job: {lines[-1] if lines else f'exit {result.exited}'}")
    job_id = result.stdout.strip().split(";")[0]
    if not job_id.isdigit():
        raise LabError(f"sbatch printed no job id: {result.stdout.strip()!r}")
    return job_id


def query(login: Connection, job_id: str, timeout: float = 25) -> JobInfo:
    """Ask Slurm once about ``job_id`` (one RPC), within ``timeout`` seconds: state ``ENDED`` once it is
    no longer listed; a SchedulerError if Slurm could not be asked."""
    info = _show_job(login, job_id, ["--local"], timeout)
    if info.state == "REVOKED":  # a federation: the job runs on a sibling cluster
        info = _show_job(login, job_id, [], timeout)
    return info


def _show_job(login: Connection, job_id: str, scope: list[str], timeout: float) -> JobInfo:
    if not valid_job_id(job_id):
        raise LabError(f"{job_id!r} is not a Slurm job id.")
    result = run_command(login, shlex.join(["scontrol", *scope, "show", "job", job_id, "-o"]), timeout=timeout)
    info = next(filter(None, map(parse_show_job, result.stdout.splitlines())), None)
    if info:
        return info
    text = (result.stderr + result.stdout).strip()
    if result.exited != 0 and "Invalid job id" not in text:
        raise _not_answering(text, result.exited)
    return JobInfo(job_id, "ENDED")


def _not_answering(text: str, exited: int) -> SchedulerError:
    last = text.splitlines()[-1] if text else f"exit {exited}"
    return SchedulerError(f"Slurm did not answer on the login node: {last} -- the scheduler could not be asked; "
                          "the job and the record are kept.")


def parse_show_job(line: str) -> JobInfo | None:
    """One line of ``scontrol show job -o``; None for anything else (or a job id that is not one)."""
    fields = dict(word.split("=", 1) for word in line.split() if "=" in word)
    job_id, state = fields.get("JobId", ""), fields.get("JobState", "")
    if not valid_job_id(job_id) or not state.isalpha():
        return None
    if fields.get("ArrayJobId") and fields.get("ArrayTaskId", "").isdigit():
        job_id = f"{fields['ArrayJobId']}_{fields['ArrayTaskId']}"
    limit, ran = parse_duration(fields.get("TimeLimit", "")), parse_duration(fields.get("RunTime", ""))
    left = ""
    if limit is not None and ran is not None and state == "RUNNING":
        left = clock(max(0.0, limit - ran))
    node = fields.get("NodeList", "")
    end = fields.get("EndTime", "")
    return JobInfo(job_id, state, _reason(fields.get("Reason", "")), node if valid_host(node) else "", left,
                   _when(fields.get("StartTime", "")), _when(end) if state != "PENDING" else "")


def _reason(text: str) -> str:
    return "" if text in ("None", "(null)") else re.sub(r"[^\w.,:()/ -]", "", text)[:80]


def _when(text: str) -> str:
    """An ISO time as Slurm prints it, or "" (N/A, Unknown, anything that is not a time)."""
    return text if re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", text) else ""


def clock(seconds: float) -> str:
    """Seconds as Slurm writes a duration: ``[D-]H:MM:SS``."""
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    text = f"{hours}:{rest // 60:02d}:{rest % 60:02d}"
    return f"{days}-{text}" if days else text


def query_many(login: Connection, job_ids: list[str], timeout: float = 25) -> dict[str, JobInfo]:
    """Ask Slurm once about several jobs (one ``squeue --local``); a job it does not list has ENDED."""
    ids = [j for j in job_ids if valid_job_id(j)]
    if not ids:
        return {}
    result = run_command(login, f"squeue --local -h -j {','.join(ids)} -o '{_FORMAT}'", timeout=timeout)
    listed = {info.job_id: info for info in map(parse_line, result.stdout.splitlines()) if info}
    text = (result.stderr + result.stdout).strip()
    if result.exited != 0 and not listed and "Invalid job id" not in text:
        raise _not_answering(text, result.exited)
    revoked = [j for j, info in listed.items() if info.state == "REVOKED"]
    answers = {j: listed.get(j, JobInfo(j, "ENDED")) for j in ids}
    return {**answers, **{j: query(login, j, timeout) for j in revoked}}


_FORMAT = "%i|%T|%r|%N|%L|%S|%e|%Z"


def my_jobs(login: Connection, timeout: float = 25) -> dict[str, JobInfo]:
    """Every job of the user that squeue lists, by id (one squeue)."""
    result = run_command(login, f"squeue --local -h --me -o '{_FORMAT}'", timeout=timeout)
    if result.exited != 0:
        raise _not_answering((result.stderr + result.stdout).strip(), result.exited)
    return {info.job_id: info for info in map(parse_line, result.stdout.splitlines()) if info}


def parse_line(line: str) -> JobInfo | None:
    """One line of squeue in ``_FORMAT``; None for anything else."""
    parts = line.strip().split("|")
    if len(parts) not in (7, 8) or not valid_job_id(parts[0]) or not parts[1].isalpha():
        return None
    job_id, state, reason, node, left, start, end = parts[:7]
    return JobInfo(job_id, state, _reason(reason), node if valid_host(node) else "",
                   left if parse_duration(left) is not None else "", _when(start), _when(end),
                   parts[7] if len(parts) == 8 else "")


def job_in(jobs: dict[str, JobInfo], workdir: str) -> JobInfo | None:
    """The job among ``jobs`` (``my_jobs``) that runs in ``workdir`` -- a lab whose job id was never
    recorded (the tool was killed inside sbatch)."""
    return next((info for info in jobs.values() if workdir and info.workdir == workdir), None)


_DURATION = re.compile(r"(?:(\d+)-)?(?:(\d+):)?(?:(\d+):)?(\d+)")


def parse_duration(text: str) -> float | None:
    """Seconds in a Slurm duration (``[D-]HH:MM:SS``, ``MM:SS``, ``SS``); None for UNLIMITED and the like."""
    match = _DURATION.fullmatch(text.strip())
    if not match:
        return None
    days, first, second, last = match.groups()
    if second is None:  # MM:SS or D-HH:MM? Slurm prints D-HH:MM:SS with days, else [HH:]MM:SS
        hours, minutes = (int(first), 0) if days else (0, int(first or 0))
        if days:
            return int(days) * 86400 + hours * 3600 + int(last) * 60
        return minutes * 60 + int(last)
    return int(days or 0) * 86400 + int(first) * 3600 + int(second) * 60 + int(last)


_WHY = {"TIMEOUT": "it reached its time limit (walltime)", "CANCELLED": "it was cancelled", "FAILED": "it failed",
        "COMPLETED": "Jupyter exited", "OUT_OF_MEMORY": "it ran out of memory", "NODE_FAIL": "its node failed",
        "PREEMPTED": "it was preempted", "DEADLINE": "it reached its deadline", "BOOT_FAIL": "its node failed to boot"}


_ENDED_IDLE = re.compile(rf"^{re.escape(idle_watch.ENDED_IDLE)} (\d+:\d\d|\d+ min) \(lab\.idle [\d: min]+\)$",
                         re.MULTILINE)
_APP_EXITED = re.compile(r"^fabfile-lab: ([a-z][a-z0-9_-]{0,31}) exited with status (\d{1,3})$", re.MULTILINE)


def end_reason(login: Connection, job_id: str, log_text: str, state: str = "") -> str:
    """Why a job ended, in a few words: from the final ``state`` Slurm just gave, else sacct where the site
    keeps accounting, else the job log. A lab that lab.idle ended says so first: to Slurm it just completed."""
    idle = _ENDED_IDLE.findall(log_text)
    if idle:
        return f"idle for {idle[-1]}, lab.idle"
    if state in _WHY:
        return _WHY[state]
    result = run_command(login, f"sacct -n -X -P -j {shlex.quote(job_id)} -o State", timeout=15)
    words = result.stdout.split() if result.exited == 0 else []
    found = words[0] if words and words[0].isalpha() else ""
    if found:
        return _WHY.get(found, found.lower())
    if "DUE TO TIME LIMIT" in log_text:
        return "it reached its time limit (walltime)"
    if "CANCELLED AT" in log_text:
        return "it was cancelled"
    exits = _APP_EXITED.findall(log_text)
    if exits:
        app, status = exits[-1]
        return f"{app} exited" if status == "0" else f"{app} exited with status {status}"
    return "the scheduler no longer lists it"


def node_address(login: Connection, node: str) -> str:
    """The address Slurm itself uses for ``node`` (NodeAddr), which need not be resolvable by name."""
    if not valid_host(node):
        raise SchedulerError(f"Slurm named the job's node {node!r}, which is not a host name.")
    listed = _node_addr_word(run(login, ["scontrol", "--local", "show", "node", node, "-o"], check=False))
    if listed and not valid_host(listed):
        raise SchedulerError(f"Slurm gave node {node} the address {listed[:60]!r}, which is not a host name or an "
                             "IP address: refusing to use it (something on the login node changes what scontrol "
                             "prints).")
    return listed or node


def on_start(login: Connection, node: str, job_id: str) -> tuple[str, Resources]:
    """As a job starts, in one command on the login node: its node's address (as :func:`node_address`) and
    what the job was given (``job_resources``), from Slurm's record of it."""
    if not valid_host(node) or not valid_job_id(job_id):
        return node_address(login, node), Resources()
    text = run_command(login, f"{shlex.join(['scontrol', '--local', 'show', 'node', node, '-o'])}; "
                              f"{shlex.join(['scontrol', '--local', 'show', 'job', '-d', job_id, '-o'])}").stdout
    node_lines = [ln for ln in text.splitlines() if ln.startswith("NodeName=")]
    job_lines = [ln for ln in text.splitlines() if ln.startswith("JobId=")]
    listed = _node_addr_word(node_lines[0]) if node_lines else ""
    if listed and not valid_host(listed):
        raise SchedulerError(f"Slurm gave node {node} the address {listed[:60]!r}, which is not a host name or an "
                             "IP address: refusing to use it (something on the login node changes what scontrol "
                             "prints).")
    return listed or node, job_resources.parse(job_lines[0]) if job_lines else Resources()


def node_addr_of(scontrol_text: str) -> str:
    """NodeAddr in ``scontrol show node -o`` output if it is a host name or an IP address; "" else."""
    found = _node_addr_word(scontrol_text)
    return found if valid_host(found) else ""


def _node_addr_word(scontrol_text: str) -> str:
    return next((w.split("=", 1)[1] for w in scontrol_text.split() if w.startswith("NodeAddr=")), "")


def cancel(login: Connection, job_id: str) -> None:
    """scancel ``job_id``; a job already gone is not an error."""
    cancel_many(login, (job_id,))


def cancel_many(login: Connection, job_ids: tuple[str, ...] | list[str]) -> None:
    """One scancel of several jobs (one RPC); jobs already gone are not an error."""
    ids = [j for j in job_ids if valid_job_id(j)]
    if ids:
        run(login, ["scancel", *ids], check=False)
