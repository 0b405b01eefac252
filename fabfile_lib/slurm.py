"""Slurm on the login node: submit, query, cancel. Every command's words are quoted by ``hops.run``.

``squeue`` failing is not "the job finished" (that is how orphaned servers happen): a query that fails
raises, and only a job that squeue no longer lists, or lists in a final state, counts as ended.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from fabric import Connection

from .errors import LabError, SchedulerError
from .hops import run, run_command

ACTIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "RESIZING", "SUSPENDED", "REQUEUED"}


@dataclass(frozen=True)
class JobInfo:
    job_id: str
    state: str  # squeue's %T, or "ENDED" once squeue no longer lists it
    reason: str = ""
    node: str = ""
    time_left: str = ""
    start: str = ""
    end: str = ""  # the expected end (walltime), squeue's %e

    @property
    def seconds_left(self) -> float | None:
        return parse_duration(self.time_left)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def running(self) -> bool:
        return self.state == "RUNNING"


def submit(login: Connection, script_path: str, workdir: str) -> str:
    """``sbatch --parsable`` the script; return the job id. umask 077 keeps the job log private."""
    cmd = f"cd {shlex.quote(workdir)} && umask 077 && sbatch --parsable {shlex.quote(script_path)}"
    result = run_command(login, cmd)
    if result.exited != 0:
        lines = [ln for ln in (result.stderr or result.stdout).strip().splitlines() if ln.strip()]
        raise SchedulerError(f"sbatch refused the job: {lines[-1] if lines else f'exit {result.exited}'}")
    job_id = result.stdout.strip().split(";")[0]
    if not job_id.isdigit():
        raise LabError(f"sbatch printed no job id: {result.stdout.strip()!r}")
    return job_id


def query(login: Connection, job_id: str, timeout: float = 25) -> JobInfo:
    """One squeue of ``job_id`` on ``login`` within ``timeout`` seconds: state ``ENDED`` once it is no
    longer listed; a SchedulerError if squeue itself fails."""
    result = run_command(login, f"squeue -h -j {shlex.quote(job_id)} -o '{_FORMAT}'", timeout=timeout)
    info = next(filter(None, map(parse_line, result.stdout.splitlines())), None)
    if not info:
        # Not listed: it ended -- unless squeue itself failed, which says nothing about the job.
        text = (result.stderr + result.stdout).strip()
        if result.exited != 0 and "Invalid job id" not in text:
            raise SchedulerError(f"squeue failed on the login node: {text.splitlines()[-1] if text else result.exited}"
                                 " -- the scheduler could not be asked; the job and the record are kept.")
        return JobInfo(job_id, "ENDED")
    return info


_FORMAT = "%i|%T|%r|%N|%L|%S|%e"


def my_jobs(login: Connection, timeout: float = 25) -> dict[str, JobInfo]:
    """Every job of the user that squeue lists, by id (one squeue)."""
    result = run_command(login, f"squeue -h --me -o '{_FORMAT}'", timeout=timeout)
    if result.exited != 0:
        text = (result.stderr + result.stdout).strip()
        raise SchedulerError(f"squeue failed on the login node: {text.splitlines()[-1] if text else result.exited}")
    return {info.job_id: info for info in map(parse_line, result.stdout.splitlines()) if info}


def parse_line(line: str) -> JobInfo | None:
    """One line of squeue in ``_FORMAT``; None for anything else."""
    parts = line.strip().split("|")
    if len(parts) < 7 or not parts[0].split("_")[0].isdigit():
        return None
    job_id, state, reason, node, left, start, end = parts[:7]
    return JobInfo(job_id, state, "" if reason in ("None", "(null)") else reason, node, left, start,
                   "" if end in ("N/A", "Unknown", "NONE") else end)


_DURATION = re.compile(r"^(?:(\d+)-)?(?:(\d+):)?(?:(\d+):)?(\d+)$")


def parse_duration(text: str) -> float | None:
    """Seconds in a Slurm duration (``[D-]HH:MM:SS``, ``MM:SS``, ``SS``); None for UNLIMITED and the like."""
    match = _DURATION.match(text.strip())
    if not match:
        return None
    days, first, second, last = match.groups()
    if second is None:  # MM:SS or D-HH:MM? Slurm prints D-HH:MM:SS with days, else [HH:]MM:SS
        hours, minutes = (int(first), 0) if days else (0, int(first or 0))
        if days:
            return int(days) * 86400 + hours * 3600 + int(last) * 60
        return minutes * 60 + int(last)
    return int(days or 0) * 86400 + int(first) * 3600 + int(second) * 60 + int(last)


def end_reason(login: Connection, job_id: str, log_text: str) -> str:
    """Why a job ended, in a few words: from sacct where the site keeps accounting, else the job log."""
    result = run_command(login, f"sacct -n -X -P -j {shlex.quote(job_id)} -o State", timeout=15)
    state = result.stdout.strip().splitlines()[0].split()[0] if result.exited == 0 and result.stdout.strip() else ""
    if state:
        return {"TIMEOUT": "it reached its time limit (walltime)", "CANCELLED": "it was cancelled",
                "FAILED": "it failed", "COMPLETED": "Jupyter exited", "OUT_OF_MEMORY": "it ran out of memory",
                "NODE_FAIL": "its node failed", "PREEMPTED": "it was preempted"}.get(state, state.lower())
    if "DUE TO TIME LIMIT" in log_text:
        return "it reached its time limit (walltime)"
    if "CANCELLED AT" in log_text:
        return "it was cancelled"
    if "jupyter exited with status" in log_text:
        status = log_text.rsplit("jupyter exited with status", 1)[1].split()[0]
        return "Jupyter exited" if status == "0" else f"Jupyter exited with status {status}"
    return "the scheduler no longer lists it"


def node_address(login: Connection, node: str) -> str:
    """The address Slurm itself uses for ``node`` (NodeAddr), which need not be resolvable by name."""
    return node_addr_of(run(login, ["scontrol", "show", "node", node, "-o"], check=False)) or node


def node_addr_of(scontrol_text: str) -> str:
    """NodeAddr in ``scontrol show node -o`` output; "" if it is not there."""
    return next((w.split("=", 1)[1] for w in scontrol_text.split() if w.startswith("NodeAddr=")), "")


def cancel(login: Connection, job_id: str) -> None:
    """scancel ``job_id``; a job already gone is not an error."""
    run(login, ["scancel", job_id], check=False)
