"""squeue, sacct and scontrol output, parsed."""

from __future__ import annotations

import pytest

from fabfile_lib import slurm


class FakeResult:
    def __init__(self, stdout: str, exited: int):
        self.stdout, self.stderr, self.exited = stdout, "", exited


@pytest.mark.parametrize("text,seconds", [
    ("1:58:03", 7083), ("58:03", 3483), ("0:30", 30), ("1-02:03:04", 93784), ("UNLIMITED", None),
    ("INVALID", None), ("", None),
])
def test_slurm_durations(text, seconds):
    assert slurm.parse_duration(text) == seconds


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


def test_squeue_lines():
    assert slurm.parse_line("12|PENDING|Priority||1:00:00|2026-11-27T14:05:00|N/A") == \
        slurm.JobInfo("12", "PENDING", "Priority", "", "1:00:00", "2026-11-27T14:05:00", "")
    assert slurm.parse_line("slurm_load_jobs error: Invalid job id specified") is None


def test_slurms_node_address():
    text = "NodeName=c1 Arch=x86_64 CoresPerSocket=1 NodeAddr=10.0.1.5 NodeHostName=c1 Version=22.05"
    assert slurm.node_addr_of(text) == "10.0.1.5"
    assert slurm.node_addr_of("Node c9 not found") == ""
