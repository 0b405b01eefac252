"""The queue line (tasks/_progress.py)."""

from __future__ import annotations

import io
from datetime import datetime

from fabfile_lib import slurm
from fabfile_lib.tasks._progress import QueueDisplay, clock, expected_start, line


def test_queue_line_and_clock():
    now = datetime(2026, 11, 27, 13, 0)
    info = slurm.JobInfo("42", "PENDING", "Priority", start="2026-11-27T14:05:00")
    assert line(info, 42, now) == "job 42: pending (Priority), 0:42 waited, starts ~14:05"
    assert expected_start("2026-11-28T09:00:00", now) == "11-28 09:00"
    assert expected_start("N/A", now) == ""
    assert (clock(5), clock(725), clock(3729)) == ("0:05", "12:05", "1:02:09")


def test_a_plain_stream_gets_one_line_per_change():
    out = io.StringIO()
    display = QueueDisplay(out, live=False)
    for info in [slurm.JobInfo("7", "PENDING", "Priority")] * 3 + [slurm.JobInfo("7", "RUNNING", node="c1")] * 2:
        display(info)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("job 7: pending (Priority)") and "running on c1" in lines[1]


def test_a_start_after_a_long_wait_is_notified_once(monkeypatch):
    import time as _time

    from fabfile_lib.tasks import _progress

    sent = []
    monkeypatch.setattr(_progress, "notify", lambda title, text: sent.append((title, text)) or True)
    slow = QueueDisplay(io.StringIO(), live=False)
    slow.began = _time.monotonic() - 31
    slow(slurm.JobInfo("7", "PENDING", "Priority"))
    for _ in range(2):
        slow(slurm.JobInfo("7", "RUNNING", node="c1"))
    quick = QueueDisplay(io.StringIO(), live=False)
    quick(slurm.JobInfo("8", "RUNNING", node="c1"))
    assert sent == [("JupyterLab job started", "job 7 runs on c1 after 0:31")]
