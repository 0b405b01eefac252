"""status: a lab held and answering is vouched for by its own path; Slurm is asked about the rest only."""

from __future__ import annotations

import os
import time

from fabfile_lib import lab, lab_status, procs, slurm
from fabfile_lib.settings import LabSettings
from fabfile_lib.state import LabRecord


class _Hops:
    settings = LabSettings.from_config({"login": "l", "connect_timeout": 1})

    def shell(self):
        return "login"


def _record(name: str, job: str, held: bool, ends_in: float = 3600) -> LabRecord:
    me = os.getpid()
    return LabRecord(name, {}, job, f"/h/{name}", "t", "compute", node="n1", forward_port=1000 + int(job),
                     forward_pid=me if held else 0, forward_started=procs.start_time(me) if held else "",
                     job_ends_at=time.time() + ends_in if held else 0.0, job_end="2026-12-02T10:00:00")


def test_labs_held_and_answering_cost_slurm_nothing_and_the_others_one_question(monkeypatch):
    asked: list[list[str]] = []

    def query_many(login, ids, timeout):
        asked.append(sorted(ids))
        return {i: slurm.JobInfo(i, "PENDING", reason="Priority") for i in ids}

    monkeypatch.setattr(slurm, "query_many", query_many)
    monkeypatch.setattr(lab_status, "_answering", lambda r: r.name != "silent")
    monkeypatch.setattr(lab_status, "ended_because", lambda hops, r: "")
    records = [_record("a", "1", True), _record("b", "2", True), _record("c", "3", False),
               _record("silent", "4", True), _record("late", "5", True, ends_in=2)]
    out = {st.name: st for st in lab.statuses(records, _Hops())}
    assert asked == [["3", "5"], ["4"]]  # not vouched for; then the held one whose URL did not answer
    assert out["a"].state == "RUNNING" and out["a"].answers and out["a"].node == "n1"
    assert out["a"].time_left.startswith(("0:59:", "1:00:")) and out["a"].end == "2026-12-02T10:00:00"
    assert out["c"].state == "PENDING" and out["silent"].state == "PENDING" and not out["silent"].answers


def test_a_time_left_counted_down_reads_back_as_slurm_s():
    assert slurm.parse_duration(slurm.clock(90061)) == 90061 and slurm.clock(3661) == "1:01:01"


def test_a_lab_whose_start_was_stopped_before_sbatch_answered_says_so(capsys):
    from fabfile_lib.lab_status import LabStatus
    from fabfile_lib.tasks import lab as lab_tasks

    def ended(job_id: str) -> LabStatus:
        return LabStatus("pp", job_id, "ENDED", "", "", "", "compute", 0, 0, 0, "", False, "/h/.fabfile-lab/pp-00",
                         ended_because="the scheduler no longer lists it")

    lab_tasks._print_statuses([ended(""), ended("42")])
    first, second = capsys.readouterr().out.splitlines()
    assert first.startswith("pp: no job: its start was stopped before sbatch answered") and "job  " not in first
    assert second.startswith("pp: job 42 has ended: the scheduler no longer lists it.") and "--name pp" in second
