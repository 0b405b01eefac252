"""The jobs a held lab has started: read beside the hold at a bounded pace, heard once per change."""

from __future__ import annotations

import time

from fabfile_lib.forwards.lab_jobs import JobsSeen


def _settle(seen: JobsSeen, now: float) -> None:
    seen.tick(now)
    deadline = time.monotonic() + 5
    while seen.pending is not None and time.monotonic() < deadline:
        time.sleep(0.01)
        seen.tick(now)


def test_the_list_is_read_at_most_every_so_often_and_each_change_heard_once():
    lists, heard, reads = [(), ("5",), ("5",), ("5", "6")], [], []

    def read():
        reads.append(1)
        return lists[min(len(reads) - 1, len(lists) - 1)]

    with JobsSeen(read, heard.append, every=10) as seen:
        for now in (0, 1, 2, 10, 11, 20, 30):
            _settle(seen, now)
    assert len(reads) == 4  # at 0, 10, 20, 30: never in between
    assert heard == [(), ("5",), ("5", "6")]


def test_a_read_that_fails_is_not_a_change_and_never_reaches_the_hold():
    def read():
        raise OSError("the hop is gone")

    heard = []
    with JobsSeen(read, heard.append, every=1) as seen:
        _settle(seen, 0)
        _settle(seen, 1)
    assert heard == []


def test_a_hold_reads_only_what_is_asked_of_it(monkeypatch):
    from fabfile_lib.forwards import holding
    from fabfile_lib.settings import LabSettings
    from fabfile_lib.state import LabRecord

    record = LabRecord("h", {}, "42", "/h/.fabfile-lab/h-0011aabb", "t", "compute")
    for idle, learnt, count in (("0", None, 0), ("off", None, 0), ("2m", None, 1), ("0", print, 1), ("2h", print, 2)):
        settings = LabSettings.from_config({"login": "l", "idle": idle})
        readers = holding._readers(settings, None, record, print, learnt)
        assert len(readers) == count, (idle, learnt)
        for reader in readers:
            reader.close()
