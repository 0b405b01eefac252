"""The held forward's policies without a cluster: reconnect pacing, walltime warnings, Slurm durations."""

from __future__ import annotations

import pytest

from fabfile_lib import slurm
from fabfile_lib.reconnect import Backoff
from fabfile_lib.watch import JobWatch


def test_reconnects_are_paced_for_sites_that_rate_limit_logins():
    b = Backoff()
    assert b.delay(0, since_last_attempt=3600) == 0  # a drop long after the last login: at once
    assert b.delay(0, since_last_attempt=4) == 6  # never two chains of handshakes within 10 s
    assert [b.delay(n, since_last_attempt=100) for n in (1, 2, 3, 4, 5)] == [10, 20, 40, 60, 60]
    assert not b.exhausted(29 * 60) and b.exhausted(31 * 60)


@pytest.mark.parametrize("text,seconds", [
    ("1:58:03", 7083), ("58:03", 3483), ("0:30", 30), ("1-02:03:04", 93784), ("UNLIMITED", None),
    ("INVALID", None), ("", None),
])
def test_slurm_durations(text, seconds):
    assert slurm.parse_duration(text) == seconds


def _info(left: str, state: str = "RUNNING") -> slurm.JobInfo:
    return slurm.JobInfo("7", state, time_left=left, end="2026-11-27T01:00:00")


def test_walltime_warnings_come_once_each_at_15_5_and_1_minutes(monkeypatch):
    monkeypatch.setattr("fabfile_lib.watch.notify", lambda *a: False)
    said: list[str] = []
    watch = JobWatch("lab", "7", said.append)
    for left in ("30:00", "16:00", "14:59", "14:00", "6:00", "4:59", "2:00", "0:59", "0:30"):
        watch.update(_info(left))
    assert len(said) == 3
    assert "15 minutes" in said[0] and "5 minutes" in said[1] and "1 minute " in said[2]
    assert "save your work" in said[0] and "2026-11-27T01:00:00" in said[0]


def test_a_lab_found_late_gets_one_warning_not_three(monkeypatch):
    monkeypatch.setattr("fabfile_lib.watch.notify", lambda *a: False)
    said: list[str] = []
    watch = JobWatch("lab", "7", said.append)
    watch.update(_info("0:50"))
    watch.update(_info("0:40"))
    assert len(said) == 1 and "1 minute" in said[0]
    watch.update(_info("0:40", state="PENDING"))  # nothing to say about a job that does not run
    assert len(said) == 1


class FakeResult:
    def __init__(self, stdout: str, exited: int):
        self.stdout, self.stderr, self.exited = stdout, "", exited


@pytest.mark.parametrize("sacct,log,words", [
    (FakeResult("TIMEOUT\n", 0), "", "time limit"),
    (FakeResult("CANCELLED by 0\n", 0), "", "cancelled"),
    (FakeResult("", 1), "slurmstepd: error: *** JOB 7 ON n CANCELLED AT 2026 DUE TO TIME LIMIT ***", "time limit"),
    (FakeResult("", 1), "slurmstepd: error: *** JOB 7 ON n CANCELLED AT 2026 ***", "cancelled"),
    (FakeResult("", 1), "fabfile-lab: jupyter exited with status 1\n", "status 1"),
    (FakeResult("", 1), "", "no longer lists"),
])
def test_why_a_job_ended_from_sacct_else_the_log(monkeypatch, sacct, log, words):
    monkeypatch.setattr(slurm, "run_command", lambda *a, **k: sacct)
    assert words in slurm.end_reason(object(), "7", log)
