"""Holding the forwards: a refused connection to Jupyter makes the held forward look at the job at once."""

from __future__ import annotations

import threading
import time

from fabfile_lib import slurm, tunnel
from fabfile_lib.forwards import Forward
from fabfile_lib.settings import LabSettings
from fabfile_lib.state import LabRecord
from fabfile_lib.watch import JobWatch


class _Hops:
    settings = LabSettings.from_config({"login": "l", "connect_timeout": 1})

    def login(self):
        return "login-connection"


def test_a_refused_connection_is_a_signal_not_a_wait_for_the_next_poll(monkeypatch):
    looks = []

    def query(login, job_id, timeout):
        looks.append(time.monotonic())
        return slurm.JobInfo(job_id, "RUNNING" if len(looks) == 1 else "ENDED")

    monkeypatch.setattr("fabfile_lib.watch.notify", lambda *a: False)
    monkeypatch.setattr(tunnel, "JOB_POLL", 600.0)
    monkeypatch.setattr(tunnel, "TICK", 0.1)  # without the signal, the second look is 10 minutes away
    monkeypatch.setattr(tunnel.slurm, "query", query)
    monkeypatch.setattr(tunnel.slurm, "end_reason", lambda login, job, log: "it was cancelled")
    monkeypatch.setattr(tunnel.lab_dir, "log_tail", lambda hops, where, lines: "")
    refused = [0]
    fwd = Forward(8888, ("127.0.0.1", 1), refusals=lambda: refused[0])
    said = []
    record = LabRecord("h", {}, "42", "/h/.fabfile-lab/h-0011aabb", "t", "compute")
    threading.Timer(0.5, lambda: refused.__setitem__(0, 1)).start()  # a browser tab meets a closed port
    began = time.monotonic()
    assert tunnel._held(_Hops(), record, fwd, JobWatch("h", "42", said.append), threading.Event(), said.append)
    assert time.monotonic() - began < 2 and len(looks) == 2
    assert any("it was cancelled" in line for line in said), said
