"""Holding the forwards: the lab's own path is the evidence; Slurm is asked only when it changes."""

from __future__ import annotations

import threading
import time

from fabfile_lib import slurm
from fabfile_lib.forwards import Forward
from fabfile_lib.forwards import holding as tunnel
from fabfile_lib.forwards.job_watch import JobWatch
from fabfile_lib.settings import LabSettings
from fabfile_lib.state import LabRecord


class _Hops:
    settings = LabSettings.from_config({"login": "l", "connect_timeout": 1})

    def shell(self):  # the watcher asks Slurm over a plain ssh -S, never a Fabric Connection
        return "login-connection"


RECORD = LabRecord("h", {}, "42", "/h/.fabfile-lab/h-0011aabb", "t", "compute")


def _holding(monkeypatch, answers, states, refused=None, seconds=3.0):
    """Run ``_held`` with a scripted probe (``answers()``) and Slurm answers; return (result, asks, said)."""
    asks: list[float] = []

    def query(login, job_id, timeout):
        asks.append(time.monotonic())
        return slurm.JobInfo(job_id, states[min(len(asks), len(states)) - 1], time_left="1:00:00")

    monkeypatch.setattr("fabfile_lib.forwards.job_watch.notify", lambda *a: False)
    monkeypatch.setattr(tunnel, "TICK", 0.02)
    monkeypatch.setattr(tunnel.pacing, "PROBE_EVERY", 0.05)
    monkeypatch.setattr(tunnel.probes, "answers", lambda port, app=None, timeout=5: answers())
    monkeypatch.setattr(tunnel.slurm, "query", query)
    monkeypatch.setattr(tunnel.slurm, "end_reason", lambda login, job, log, state="": "it was cancelled")
    monkeypatch.setattr(tunnel.lab_dir, "log_tail", lambda hops, where, lines: "")
    monkeypatch.setattr(tunnel.lab_dir, "jobs", lambda hops, where: ())  # it started none
    said: list[str] = []
    vigil = tunnel.Vigil(JobWatch("h", "42", said.append), said.append, None)
    vigil.asking.pace = tunnel.pacing.Pace(first=0.1)
    fwd = Forward(8888, ("127.0.0.1", 1), refusals=refused)
    stop = threading.Event()
    timer = threading.Timer(seconds, stop.set)
    timer.start()
    try:
        result = tunnel._held(_Hops(), RECORD, fwd, vigil, stop)
    finally:
        timer.cancel()  # a hold that ended by itself leaves no timer for the interpreter to wait out
    return result, asks, said


def test_a_lab_that_answers_asks_slurm_once_for_its_time_limit(monkeypatch):
    result, asks, said = _holding(monkeypatch, lambda: True, ["RUNNING"], seconds=0.3)
    assert result is False and len(asks) == 1 and said == []


def test_jupyter_gone_asks_slurm_at_once_and_an_ended_job_stops_the_hold(monkeypatch):
    gone_at = time.monotonic() + 0.2
    result, asks, said = _holding(monkeypatch, lambda: time.monotonic() < gone_at, ["RUNNING", "CANCELLED"])
    assert result is True and len(asks) == 2
    assert asks[1] - gone_at < 1.0
    assert any("it was cancelled" in line for line in said), said


def test_a_silent_path_while_the_job_runs_is_a_drop_not_an_end(monkeypatch):
    gone_at = time.monotonic() + 0.15
    result, asks, said = _holding(monkeypatch, lambda: time.monotonic() < gone_at, ["RUNNING"])
    assert result is False and len(asks) == 2
    assert any("forward down, reconnecting" in line for line in said), said


def test_a_refused_connection_is_a_signal_not_a_wait_for_the_next_probe(monkeypatch):
    monkeypatch.setattr(tunnel.pacing, "PROBE_EVERY", 600.0)
    refused = [0]
    threading.Timer(0.2, lambda: refused.__setitem__(0, 1)).start()  # a browser tab meets a closed port
    result, asks, said = _holding(monkeypatch, lambda: refused[0] == 0, ["RUNNING", "CANCELLED"],
                                  refused=lambda: refused[0])
    assert result is True and len(asks) == 2


def test_a_scheduler_that_does_not_answer_is_asked_later_and_never_ends_the_hold(monkeypatch):
    from fabfile_lib.errors import SchedulerError

    asks = []

    def broken(login, job_id, timeout):
        asks.append(1)
        raise SchedulerError("Slurm did not answer on the login node: Socket timed out")

    result, _, said = _holding(monkeypatch, lambda: True, ["RUNNING"], seconds=0.15)
    monkeypatch.setattr(tunnel.slurm, "query", broken)
    stop = threading.Event()
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    vigil = tunnel.Vigil(JobWatch("h", "42", said.append), said.append, None)
    try:
        assert tunnel._held(_Hops(), RECORD, Forward(8888, ("127.0.0.1", 1)), vigil, stop) is False
    finally:
        timer.cancel()
    assert len(asks) == 1  # the next question waits pacing.AFTER_FAILURE (10 s and more)
    assert any("asking again in" in line for line in said), said


def test_a_reverse_hop_that_is_down_waits_and_an_ended_job_ends_the_hold(monkeypatch):
    import pytest

    from fabfile_lib import lab_dir
    from fabfile_lib.errors import ConnectError, JobEnded

    rec = LabRecord("r", {}, "42", "/h/.fabfile-lab/r-0011aabb", "t", "reverse", login_host="login2")
    monkeypatch.setattr(tunnel.lab_dir, "read", lambda hops, where, name:
                        "Allocated port 4100 for remote forward\nfabfile-lab: reverse ssh exited with status 255\n")
    monkeypatch.setattr(tunnel.lab_dir, "look", lambda hops, where: lab_dir.Look(node="c1", runtime={"port": 8888}))
    with pytest.raises(ConnectError, match="being made again"):
        tunnel._current_endpoint(_Hops(), rec)
    monkeypatch.setattr(tunnel.lab_dir, "read", lambda hops, where, name: "Allocated port 4100 for remote forward\n"
                        "fabfile-lab: reverse ssh exited with status 255\nAllocated port 4200 for remote forward\n")
    assert tunnel._current_endpoint(_Hops(), rec).remote_port == 4200
    monkeypatch.setattr(tunnel.lab_dir, "look", lambda hops, where: lab_dir.Look(node="c1", ended=True))
    with pytest.raises(JobEnded):
        tunnel._current_endpoint(_Hops(), rec)
