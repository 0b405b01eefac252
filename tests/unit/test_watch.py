"""Walltime warnings, counted down on the local clock between Slurm's rare answers."""

from __future__ import annotations

from fabfile_lib import slurm
from fabfile_lib.forwards.job_watch import JobWatch
from fabfile_lib.pacing import TIME_LIMIT_EVERY


def _info(left: str, state: str = "RUNNING") -> slurm.JobInfo:
    return slurm.JobInfo("7", state, time_left=left, end="2026-11-27T01:00:00")


def test_walltime_warnings_come_once_each_at_15_5_and_1_minutes_from_one_answer(monkeypatch):
    monkeypatch.setattr("fabfile_lib.forwards.job_watch.notify", lambda *a: False)
    said: list[str] = []
    watch = JobWatch("lab", "7", said.append)
    watch.learn(_info("30:00"), now=0)
    for minute in range(0, 31):
        watch.tick(minute * 60.0)
    assert len(said) == 3
    assert "15 minutes" in said[0] and "5 minutes" in said[1] and "1 minute " in said[2]
    assert "save your work" in said[0] and "2026-11-27T01:00:00" in said[0]


def test_a_lab_found_late_gets_one_warning_not_three(monkeypatch):
    monkeypatch.setattr("fabfile_lib.forwards.job_watch.notify", lambda *a: False)
    said: list[str] = []
    watch = JobWatch("lab", "7", said.append)
    watch.learn(_info("0:50"), now=0)
    watch.tick(10)
    assert len(said) == 1 and "1 minute" in said[0]
    watch.learn(_info("0:40", state="PENDING"), now=20)  # nothing to say about a job that does not run
    watch.tick(30)
    assert len(said) == 1


def test_an_extended_time_limit_is_learnt_at_the_next_reading(monkeypatch):
    monkeypatch.setattr("fabfile_lib.forwards.job_watch.notify", lambda *a: False)
    said: list[str] = []
    watch = JobWatch("lab", "7", said.append)
    assert watch.stale(0)
    watch.learn(_info("20:00"), now=0)
    assert not watch.stale(TIME_LIMIT_EVERY - 1) and watch.stale(TIME_LIMIT_EVERY)
    watch.learn(_info("2:00:00"), now=TIME_LIMIT_EVERY)  # the admin gave it two more hours
    watch.tick(TIME_LIMIT_EVERY + 600)
    assert said == []
