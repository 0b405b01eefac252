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
    (FakeResult("", 1), "fabfile-lab: jupyterlab exited with status 1\n", "status 1"),
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


def test_scontrol_show_job_lines_become_job_infos():
    line = ("JobId=42 JobName=lab-x UserId=u(1) JobState=RUNNING Reason=None RunTime=00:10:00 "
            "TimeLimit=01:00:00 StartTime=2026-12-01T10:00:00 EndTime=2026-12-01T11:00:00 NodeList=c1")
    assert slurm.parse_show_job(line) == slurm.JobInfo("42", "RUNNING", "", "c1", "0:50:00", "2026-12-01T10:00:00",
                                                       "2026-12-01T11:00:00")
    pending = "JobId=43 JobState=PENDING Reason=Priority StartTime=Unknown EndTime=Unknown NodeList=(null)"
    assert slurm.parse_show_job(pending) == slurm.JobInfo("43", "PENDING", "Priority")
    assert slurm.parse_show_job("slurm_load_jobs error: Invalid job id specified") is None


@pytest.mark.parametrize("hostile", ["n1'$(id>/tmp/x)'", "n1 -oProxyCommand=x", "-n1", "n1%h", "n1\n", "a/b", ""])
def test_a_node_name_that_is_not_a_host_name_is_not_taken(hostile):
    assert slurm.parse_line(f"12|RUNNING|None|{hostile}|1:00:00|N/A|N/A") in (
        None, slurm.JobInfo("12", "RUNNING", "", "", "1:00:00"))
    if not any(c.isspace() for c in hostile):  # scontrol -o separates its fields by blanks
        assert slurm.parse_show_job(f"JobId=12 JobState=RUNNING NodeList={hostile}") in (
            None, slurm.JobInfo("12", "RUNNING"))
        assert slurm.node_addr_of(f"NodeName=c1 NodeAddr={hostile} x=y") == ""


@pytest.mark.parametrize("hostile", ["12\n", "12;id", "$(id)", "1_2_3", "", "-1"])
def test_a_job_id_that_is_not_one_is_not_taken(hostile):
    assert slurm.parse_line(f"{hostile}|RUNNING|None|c1|1:00:00|N/A|N/A") is None
    assert not slurm.valid_job_id(hostile)


def test_a_job_revoked_here_is_asked_for_federation_wide(monkeypatch):
    commands = []

    def run_command(login, command, timeout=60):
        commands.append(command)
        state = "REVOKED" if "--local" in command else "RUNNING"
        return FakeResult(f"JobId=5 JobState={state} NodeList=c9\n", 0)

    monkeypatch.setattr(slurm, "run_command", run_command)
    assert slurm.query(object(), "5").state == "RUNNING"
    assert commands == ["scontrol --local show job 5 -o", "scontrol show job 5 -o"]


def test_one_question_for_several_jobs_and_a_missing_one_has_ended(monkeypatch):
    commands = []

    def run_command(login, command, timeout=60):
        commands.append(command)
        return FakeResult("5|RUNNING|None|c1|0:30:00|N/A|N/A\n", 0)

    monkeypatch.setattr(slurm, "run_command", run_command)
    infos = slurm.query_many(object(), ["5", "6"])
    assert infos["5"].running and infos["6"].state == "ENDED" and len(commands) == 1
    assert "--local" in commands[0] and "-j 5,6" in commands[0]
