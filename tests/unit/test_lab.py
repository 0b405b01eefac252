"""The life cycle's policies: how often wait looks, what it says when a job ends or time runs out."""

from __future__ import annotations

from dataclasses import replace

import pytest

from fabfile_lib import lab, slurm, state
from fabfile_lib.errors import JobEnded, LabError, SchedulerError, WaitTimeout
from fabfile_lib.lab import ended_early
from fabfile_lib.settings import LabSettings
from fabfile_lib.state import LabRecord


def test_wait_polls_often_while_a_job_starts_and_gently_once_it_queues():
    from fabfile_lib.lab import poll_interval

    assert poll_interval(True, 500) == 0.1 and poll_interval(False, 3) == 0.2
    assert poll_interval(False, 60) == 1.0 and poll_interval(False, 600) == 5.0


def test_the_batch_scripts_own_error_line_is_what_the_user_sees():
    record = LabRecord("n", {}, "42", "/d", "t", "compute")
    log = "fabfile-lab: job 42 on c1\nfabfile-lab: error: `jupyter` not found after setup (PATH=/usr/bin)\n"
    assert ended_early(record, log) == ("job 42 ended before Jupyter answered: `jupyter` not found after setup "
                                        "(PATH=/usr/bin) -- fix lab.env or lab.setup.")
    assert "log tail: a | b" in ended_early(record, "a\nb\n")


class _Clock:
    """time.monotonic and time.sleep for a wait that takes no real time."""

    def __init__(self):
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class _Hops:
    def login(self):
        return "login-connection"


def _waiting(monkeypatch, tmp_path, answers, probe=None, log="", timeout=3.0):
    """Run lab.wait against scripted squeue answers (the last one repeats) and a scripted probe."""
    clock, seen = _Clock(), []
    answers = list(answers)
    monkeypatch.setattr(lab, "time", clock)
    monkeypatch.setattr(lab.slurm, "query", lambda login, job, timeout: answers.pop(0) if len(answers) > 1
                        else answers[0])
    monkeypatch.setattr(lab, "_probe", probe or (lambda hops, record, info: (record, False, "")))
    monkeypatch.setattr(lab.lab_dir, "log_tail", lambda hops, where, lines: log)
    settings = LabSettings.from_config({"login": "l", "state_dir": str(tmp_path), "wait_timeout": 60})
    record = LabRecord("w", {}, "42", "/h/.fabfile-lab/w-0011aabb", "t", "compute")
    return lab.wait(settings, record, _Hops(), seen.append, timeout=timeout), seen


def test_wait_gives_up_after_the_timeout_it_was_given_and_says_why(monkeypatch, tmp_path):
    with pytest.raises(WaitTimeout, match=r"within 3 s \(job 42 pending: Priority\)"):
        _waiting(monkeypatch, tmp_path, [slurm.JobInfo("42", "PENDING", "Priority")])


def test_wait_reports_the_batch_scripts_error_when_the_job_ends(monkeypatch, tmp_path):
    log = "fabfile-lab: error: conda activate lab failed\n"
    with pytest.raises(JobEnded, match="conda activate lab failed -- fix lab.env"):
        _waiting(monkeypatch, tmp_path, [slurm.JobInfo("42", "PENDING"), slurm.JobInfo("42", "ENDED")], log=log)


def test_wait_returns_and_records_the_lab_once_jupyter_answers(monkeypatch, tmp_path):
    def probe(hops, record, info):
        return replace(record, node=info.node, remote_host="127.0.0.1", remote_port=8888), True, ""

    result, seen = _waiting(monkeypatch, tmp_path, [slurm.JobInfo("42", "PENDING", "Resources"),
                                                          slurm.JobInfo("42", "RUNNING", node="c1")], probe)
    assert (result.node, result.remote_port) == ("c1", 8888)
    assert state.load(tmp_path, "w") == result
    assert [i.state for i in seen] == ["PENDING", "RUNNING"]  # every squeue answer goes to progress


def test_an_endpoint_that_refuses_for_15_seconds_names_the_other_modes(monkeypatch, tmp_path):
    def probe(hops, record, info):
        return record, False, "connect failed: Connection refused"

    with pytest.raises(LabError, match="Connection refused.*one of: login, reverse"):
        _waiting(monkeypatch, tmp_path, [slurm.JobInfo("42", "RUNNING", node="c1")], probe, timeout=60)


def test_a_failing_squeue_is_never_taken_as_the_end(monkeypatch, tmp_path):
    def broken(login, job, timeout):
        raise SchedulerError("squeue failed on the login node: slurm_load_jobs error")

    monkeypatch.setattr(lab.slurm, "query", broken)
    settings = LabSettings.from_config({"login": "l", "state_dir": str(tmp_path)})
    record = LabRecord("w", {}, "42", "/h/.fabfile-lab/w-0011aabb", "t", "compute")
    with pytest.raises(SchedulerError):
        lab.wait(settings, record, _Hops(), None, timeout=3)
