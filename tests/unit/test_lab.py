"""The life cycle's policies: how often wait looks, what it says when a job ends or time runs out."""

from __future__ import annotations

from dataclasses import replace

import pytest

from fabfile_lib import lab, lab_dir, slurm, state
from fabfile_lib.errors import JobEnded, LabError, SchedulerError, WaitTimeout
from fabfile_lib.job_resources import Resources
from fabfile_lib.lab import ended_early
from fabfile_lib.settings import LabSettings
from fabfile_lib.state import LabRecord


def test_wait_looks_often_while_a_job_starts_and_gently_once_it_queues():
    from fabfile_lib.lab import look_interval

    assert look_interval(True, 500) == 0.01 and look_interval(False, 3) == 0.2
    assert look_interval(False, 60) == 1.0 and look_interval(False, 600) == 5.0


def test_the_batch_scripts_own_error_line_is_what_the_user_sees():
    record = LabRecord("n", {}, "42", "/d", "t", "compute")
    log = "fabfile-lab: job 42 on c1\nfabfile-lab: error: `jupyter` not found after setup (PATH=/usr/bin)\n"
    assert ended_early(record, log) == ("job 42 ended before JupyterLab answered: `jupyter` not found after setup "
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
    settings = LabSettings.from_config({"login": "l", "connect_timeout": 1})

    def login(self):
        return "login-connection"

    def shell(self):
        return "login-connection"


_ASKED: list[float] = []  # when the last _waiting asked Slurm, seconds into its wait


def _waiting(monkeypatch, tmp_path, answers, probe=None, log="", timeout=3.0, looks=None, handoff=False):
    """Run lab.wait against scripted Slurm answers (the last one repeats), lab-directory looks (``looks(t)``
    at t seconds into the wait) and a scripted probe; return (record, progress seen, times Slurm was asked)."""
    clock, seen, asked = _Clock(), [], []
    answers = list(answers)

    def query(login, job, timeout):
        asked.append(clock.now - 1000.0)
        _ASKED[:] = asked
        return answers.pop(0) if len(answers) > 1 else answers[0]

    monkeypatch.setattr(lab, "time", clock)
    monkeypatch.setattr(lab.slurm, "query", query)
    monkeypatch.setattr(lab.slurm, "on_start", lambda login, node, job: ("10.0.0.9", Resources(1)))
    monkeypatch.setattr(lab.lab_dir, "look", lambda hops, where, node="", **wait: (looks or (lambda t: lab_dir.Look()))(
        clock.now - 1000.0))
    monkeypatch.setattr(lab, "_probe", probe or (lambda hops, record, seen, probe=True: (record, False, "")))
    monkeypatch.setattr(lab.lab_dir, "log_tail", lambda hops, where, lines: log)
    settings = LabSettings.from_config({"login": "l", "state_dir": str(tmp_path), "wait_timeout": 60})
    record = LabRecord("w", {}, "42", "/h/.fabfile-lab/w-0011aabb", "t", "compute")
    state.create(tmp_path, record)
    return lab.wait(settings, record, _Hops(), seen.append, timeout=timeout, handoff=handoff), seen, asked


def test_wait_gives_up_after_the_timeout_it_was_given_and_says_why(monkeypatch, tmp_path):
    with pytest.raises(WaitTimeout, match=r"within 3 s \(job 42 pending: Priority\)"):
        _waiting(monkeypatch, tmp_path, [slurm.JobInfo("42", "PENDING", "Priority")])


def test_a_pending_job_is_asked_about_rarely_with_backoff(monkeypatch, tmp_path):
    monkeypatch.setattr(lab.pacing.random, "random", lambda: 0.0)  # the shortest delays: the most questions
    with pytest.raises(WaitTimeout):
        _waiting(monkeypatch, tmp_path, [slurm.JobInfo("42", "PENDING", "Priority")], timeout=130)
    asked = list(_ASKED)
    in_window = [t for t in asked if 10 <= t <= 130]
    assert len(in_window) <= 8 and asked[0] == pytest.approx(lab.pacing.FIRST_ASK)  # ≤ 8 RPCs after the first 10 s
    assert max(b - a for a, b in zip(asked, asked[1:], strict=False)) <= 45 * 1.2 + 5


def test_wait_reports_the_batch_scripts_error_when_the_job_ends(monkeypatch, tmp_path):
    log = "fabfile-lab: error: conda activate lab failed\n"
    with pytest.raises(JobEnded, match="conda activate lab failed -- fix lab.env"):
        _waiting(monkeypatch, tmp_path, [slurm.JobInfo("42", "PENDING"), slurm.JobInfo("42", "ENDED")], log=log,
                 timeout=60)


def test_the_jobs_own_end_mark_ends_the_wait_without_asking_slurm(monkeypatch, tmp_path):
    def looks(t):
        return lab_dir.Look(node="c1", ended=t > 2)

    log = "fabfile-lab: error: `jupyter` not found after setup (PATH=/usr/bin)\n"
    with pytest.raises(JobEnded, match="not found after setup"):
        _waiting(monkeypatch, tmp_path, [slurm.JobInfo("42", "RUNNING", node="c1")], log=log, timeout=60,
                 looks=looks)


def test_wait_returns_and_records_the_lab_once_jupyter_answers(monkeypatch, tmp_path):
    def probe(hops, record, seen, probe=True):
        return replace(record, node=seen.node, remote_host="127.0.0.1", remote_port=8888), True, ""

    def looks(t):
        return lab_dir.Look(node="c1" if t > 5 else "")

    result, seen, asked = _waiting(monkeypatch, tmp_path, [slurm.JobInfo("42", "PENDING", "Resources")], probe,
                                   timeout=60, looks=looks)
    assert (result.node, result.remote_port) == ("c1", 8888)
    assert state.load(tmp_path, "w") == result
    assert [i.state for i in seen][0] == "PENDING" and seen[-1].state == "RUNNING" and seen[-1].node == "c1"
    assert len(asked) <= 2  # at once, then about 3 s later: the start itself is read from the lab directory


def test_a_node_slurm_named_first_is_still_told_to_the_watcher_as_soon_as_the_job_writes_it(monkeypatch, tmp_path):
    """Slurm's first answer may already say RUNNING (free resources): the node's address is still asked, and
    the record still names the node, while Jupyter starts -- so the watcher logs in to the node meanwhile,
    not after Jupyter listens."""
    recorded = []

    def probe(hops, record, seen, probe=True):
        recorded.append(state.load(tmp_path, "w").node_addr)
        return record, seen.runtime is not None, ""

    def looks(t):
        return lab_dir.Look(node="c1" if t > 1 else "", runtime={"port": 1} if t > 3 else None)

    result, seen, _ = _waiting(monkeypatch, tmp_path, [slurm.JobInfo("42", "RUNNING", node="c1")], probe,
                               timeout=60, looks=looks, handoff=True)
    assert recorded and set(recorded) == {"10.0.0.9"}  # in the record from the first look that saw the node on
    assert result.node_addr == "10.0.0.9" and [i.state for i in seen] == ["RUNNING"]  # said once


def test_what_wait_learnt_is_merged_into_the_record_never_over_it(monkeypatch, tmp_path):
    """A background forward that wrote its own fields meanwhile keeps them; a lab cancelled meanwhile is
    not recorded again."""
    def probe(hops, record, seen, probe=True):
        state.update(tmp_path, "w", forward_pid=4242)  # written by another process during the wait
        return replace(record, node="c1", remote_socket="/tmp/fl-x/jupyter.sock"), True, ""

    running = [slurm.JobInfo("42", "RUNNING")]
    result = _waiting(monkeypatch, tmp_path, running, probe, looks=lambda t: lab_dir.Look("c1"))[0]
    assert (result.forward_pid, result.remote_socket) == (4242, "/tmp/fl-x/jupyter.sock")
    assert state.load(tmp_path, "w") == result

    def gone(hops, record, seen, probe=True):
        state.remove(tmp_path, "w")
        return replace(record, node="c1", remote_port=8888), True, ""

    _waiting(monkeypatch, tmp_path, running, gone, looks=lambda t: lab_dir.Look("c1"))
    assert not state.exists(tmp_path, "w")


def test_an_endpoint_that_refuses_for_15_seconds_names_the_other_modes(monkeypatch, tmp_path):
    def probe(hops, record, seen, probe=True):
        return record, False, "connect failed: Connection refused"

    with pytest.raises(LabError, match="Connection refused.*one of: login, reverse"):
        _waiting(monkeypatch, tmp_path, [slurm.JobInfo("42", "RUNNING", node="c1")], probe, timeout=60,
                 looks=lambda t: lab_dir.Look(node="c1"))


def test_a_failing_scheduler_is_never_taken_as_the_end_and_is_asked_more_slowly(monkeypatch, tmp_path):
    clock, asked, seen = _Clock(), [], []

    def broken(login, job, timeout):
        asked.append(clock.now - 1000.0)
        raise SchedulerError("Slurm did not answer on the login node: Socket timed out")

    monkeypatch.setattr(lab, "time", clock)
    monkeypatch.setattr(lab.slurm, "query", broken)
    monkeypatch.setattr(lab.lab_dir, "look", lambda hops, where, node="", **wait: lab_dir.Look())
    settings = LabSettings.from_config({"login": "l", "state_dir": str(tmp_path)})
    record = LabRecord("w", {}, "42", "/h/.fabfile-lab/w-0011aabb", "t", "compute")
    with pytest.raises(SchedulerError, match="Slurm is not answering.*kept"):  # not a timeout of the job
        lab.wait(settings, record, _Hops(), seen.append, timeout=300)
    assert len(asked) <= 6 and asked[1] - asked[0] >= 8  # 10 s, 20 s, 40 s... (with jitter)
    assert seen[0].state == "UNKNOWN" and "asking again in" in seen[0].reason


def test_a_cancel_returns_once_slurm_has_let_the_job_go_not_at_its_end_mark(monkeypatch):
    """The end mark says the job stopped writing; squeue still lists it COMPLETING for a moment after."""
    clock, asked = _Clock(), []
    answers = [slurm.JobInfo("42", "RUNNING"), slurm.JobInfo("42", "COMPLETING"), slurm.JobInfo("42", "CANCELLED")]

    def query(login, job, timeout):
        asked.append(clock.now - 1000.0)
        return answers.pop(0) if len(answers) > 1 else answers[0]

    looks = []
    monkeypatch.setattr(lab, "time", clock)
    monkeypatch.setattr(lab.slurm, "query", query)
    monkeypatch.setattr(lab.lab_dir, "look", lambda hops, where: looks.append(1) or lab_dir.Look("c1", ended=True))
    lab._await_end(_Hops(), LabRecord("w", {}, "42", "/d", "t", "compute"))
    assert len(asked) == 3 and len(looks) == 1 and clock.now - 1000.0 < 10


def test_a_cancel_waits_a_bounded_time_for_a_scheduler_that_does_not_answer(monkeypatch):
    clock = _Clock()

    def query(login, job, timeout):
        raise SchedulerError("Slurm did not answer")

    monkeypatch.setattr(lab, "time", clock)
    monkeypatch.setattr(lab.slurm, "query", query)
    monkeypatch.setattr(lab.lab_dir, "look", lambda hops, where: lab_dir.Look("c1", ended=True))
    lab._await_end(_Hops(), LabRecord("w", {}, "42", "/d", "t", "compute"), within=20)
    assert 20 <= clock.now - 1000.0 < 21


def test_a_pending_lab_is_looked_at_once_per_question_to_slurm_not_once_per_step(monkeypatch, tmp_path):
    """Each look waits on the login node until Slurm is next due (a fake that waits that long and sees
    nothing): two minutes of queueing are a handful of commands, not one every 0.2-1 s; once the node is
    there the next look waits for the app, and none waits past the deadline."""
    clock, looks, asked = _Clock(), [], []

    def look(hops, where, node="", step=0.1, up_to=0.0):
        looks.append((clock.now - 1000.0, node, step, up_to))
        clock.now += up_to  # nothing came meanwhile
        return lab_dir.Look("c1" if clock.now - 1000.0 >= 120 else "")

    monkeypatch.setattr(lab, "time", clock)
    monkeypatch.setattr(lab.pacing.random, "random", lambda: 0.5)
    monkeypatch.setattr(lab.slurm, "query", lambda login, job, timeout: asked.append(1) or
                        slurm.JobInfo("42", "PENDING", "Priority"))
    monkeypatch.setattr(lab.slurm, "on_start", lambda login, node, job: ("10.0.0.9", Resources(1)))
    monkeypatch.setattr(lab.lab_dir, "look", look)
    monkeypatch.setattr(lab, "_probe", lambda hops, record, seen, probe=True: (record, False, ""))
    settings = LabSettings.from_config({"login": "l", "state_dir": str(tmp_path)})
    record = LabRecord("w", {}, "42", "/h/.fabfile-lab/w-0011aabb", "t", "compute")
    state.create(tmp_path, record)
    with pytest.raises(WaitTimeout):
        lab.wait(settings, record, _Hops(), None, timeout=150)
    pending = [entry for entry in looks if not entry[1]]
    assert len(pending) <= 2 * len(asked) + 2 and len(asked) <= 10, (looks, asked)
    assert all(up_to <= 30 for _, _, _, up_to in looks)
    started = [entry for entry in looks if entry[1] == "c1"]
    assert started and all(step == 0.01 for _, _, step, _ in started)  # waiting for the app: every 0.01 s there
    assert max(t + up_to for t, _, _, up_to in looks) <= 150 + 1  # never past the deadline


def test_a_job_that_starts_within_a_second_costs_slurm_no_question(monkeypatch, tmp_path):
    """Free resources: the job writes its node before the first question is due, and the wait says it runs."""
    ready = lambda hops, record, seen, probe=True: (record, True, "")  # noqa: E731
    record, seen, asked = _waiting(monkeypatch, tmp_path, [slurm.JobInfo("42", "PENDING")], probe=ready,
                                   looks=lambda t: lab_dir.Look("c1") if t >= 0.5 else lab_dir.Look())
    assert asked == [] and record.node == "c1"
    assert [info.state for info in seen] == ["RUNNING"]
