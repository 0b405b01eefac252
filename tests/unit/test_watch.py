"""Walltime warnings."""

from __future__ import annotations

from fabfile_lib import slurm
from fabfile_lib.watch import JobWatch


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
