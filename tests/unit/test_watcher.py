"""The watcher's reconciliation on fakes: records in, labs held and dropped out."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from fabfile_lib import procs, state, watcher
from fabfile_lib.state import LabRecord
from fabfile_lib.watcher import Plan, reconcile


def test_labs_wanted_are_held_and_labs_no_longer_wanted_are_dropped():
    assert reconcile({"a": "1", "b": "2"}, {}, frozenset()) == Plan(start=(("a", "1"), ("b", "2")))
    assert reconcile({}, {"a": "1"}, frozenset()) == Plan(stop=("a",))
    assert reconcile({"a": "1"}, {"a": "1"}, frozenset()) == Plan()


def test_a_new_request_drops_the_old_hold_first_and_a_finished_one_is_not_restarted():
    assert reconcile({"a": "2"}, {"a": "1"}, frozenset()) == Plan(stop=("a",))  # its port is let go first
    assert reconcile({"a": "2"}, {}, frozenset()) == Plan(start=(("a", "2"),))
    assert reconcile({"a": "1"}, {}, frozenset({("a", "1")})) == Plan()  # ended by itself: asked anew only


class FakeHolds:
    """A HoldLab that holds nothing but says what it was asked, until its stop is set."""

    def __init__(self):
        self.started: list[tuple[str, str]] = []
        self.running: dict[str, threading.Event] = {}
        self.end_now: set[str] = set()

    def __call__(self, state_dir: Path, name: str, request: str, stop: threading.Event) -> None:
        self.started.append((name, request))
        self.running[name] = stop
        while not stop.wait(0.01) and name not in self.end_now:
            pass
        self.running.pop(name, None)


def _record(tmp_path: Path, name: str, hold: str = "") -> None:
    state.create(tmp_path, LabRecord(name=name, settings={}, job_id="1", remote_dir="/r", token="t", via="compute",
                                     hold=hold))


def _until(predicate, within: float = 2.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.01)


def test_the_watcher_follows_the_records(tmp_path):
    _record(tmp_path, "a", hold="1")
    _record(tmp_path, "b", hold="2")
    _record(tmp_path, "c")  # not asked for
    holds = FakeHolds()
    w = watcher.Watcher(tmp_path, holds)
    assert w.turn()
    assert sorted(holds.started) == [("a", "1"), ("b", "2")]
    _until(lambda: set(holds.running) == {"a", "b"})
    state.update(tmp_path, "a", hold="")  # tunnel --stop
    state.remove(tmp_path, "b")  # cancel
    w.turn()
    _until(lambda: not holds.running)
    assert not w.turn()  # nothing held, nothing wanted
    w.stop_all()


def test_a_lab_that_ends_by_itself_leaves_the_others_held_and_is_held_again_only_when_asked(tmp_path):
    _record(tmp_path, "a", hold="1")
    _record(tmp_path, "b", hold="2")
    holds = FakeHolds()
    w = watcher.Watcher(tmp_path, holds)
    w.turn()
    _until(lambda: set(holds.running) == {"a", "b"})
    holds.end_now.add("a")  # its job ended (the record still asks: the thread could not say so)
    _until(lambda: set(holds.running) == {"b"})
    w.turn()
    w.turn()
    assert holds.started.count(("a", "1")) == 1
    holds.end_now.clear()
    state.update(tmp_path, "a", hold="3")  # tunnel --detach again
    w.turn()
    assert ("a", "3") in holds.started and set(holds.running) >= {"b"}
    w.stop_all()


def test_the_watcher_ends_once_nothing_is_held_and_says_so_in_its_file(tmp_path):
    _record(tmp_path, "a", hold="1")
    state.watcher_path(tmp_path).write_text(json.dumps({"pid": os.getpid(), "started": procs.start_time(os.getpid())}))
    holds = FakeHolds()
    stop = threading.Event()
    runner = threading.Thread(target=watcher.run, args=(tmp_path, holds, stop, 0.01))
    runner.start()
    _until(lambda: "a" in holds.running)
    assert watcher.ours(tmp_path)
    state.remove(tmp_path, "a")
    runner.join(5)
    assert not runner.is_alive() and not state.watcher_path(tmp_path).exists()


def test_a_stopped_watcher_lets_every_lab_go_and_keeps_their_requests(tmp_path):
    _record(tmp_path, "a", hold="1")
    holds = FakeHolds()
    stop = threading.Event()
    runner = threading.Thread(target=watcher.run, args=(tmp_path, holds, stop, 0.01))
    runner.start()
    _until(lambda: "a" in holds.running)
    stop.set()  # SIGTERM
    runner.join(5)
    assert not holds.running and state.load(tmp_path, "a").hold == "1"  # the next watcher holds it again


def test_a_failure_of_the_watcher_reaches_the_task_as_the_same_kind(tmp_path):
    from fabfile_lib import detached, errors, held_lab

    _record(tmp_path, "a", hold="1")
    refusal = errors.ForwardingRefused("login1 refuses TCP forwarding", frozenset({"tcp"}))
    held_lab._let_go(tmp_path, "a", "1", refusal, stopped=False)
    record = state.load(tmp_path, "a")
    assert record.hold == "" and record.forward_error == "ForwardingRefused"
    revived = detached.failure(record)
    assert isinstance(revived, errors.ForwardingRefused) and revived.refused == {"tcp"}
    assert str(revived) == "login1 refuses TCP forwarding"
    assert errors.named("PromptNeeded") is errors.PromptNeeded and errors.named("os.system") is errors.LabError


def test_a_hold_stopped_on_request_is_not_taken_for_a_failure(tmp_path):
    from fabfile_lib import detached, held_lab

    _record(tmp_path, "a", hold="2")  # asked anew while the old hold ("1") let go
    held_lab._let_go(tmp_path, "a", "1", None, stopped=True)
    assert state.load(tmp_path, "a").hold == "2" and detached.failure(state.load(tmp_path, "a")) is None


def test_the_node_is_heard_once_as_soon_as_the_record_names_it_and_the_lab_once_jupyter_answers(tmp_path):
    from fabfile_lib import held_lab

    _record(tmp_path, "a", hold="1")
    heard: list[str] = []
    stop = threading.Event()
    threading.Timer(0.1, lambda: state.update(tmp_path, "a", node="n1", node_addr="10.0.0.9")).start()
    threading.Timer(0.3, lambda: state.update(tmp_path, "a", remote_socket="/tmp/fl-x/jupyter.sock")).start()
    ready = held_lab.await_ready(tmp_path, "a", "1", stop, on_node=lambda rec: heard.append(rec.node_addr))
    assert ready is not None and ready.reachable and heard == ["10.0.0.9"]
    state.update(tmp_path, "a", hold="2")  # asked anew meanwhile: this hold waits for nothing
    assert held_lab.await_ready(tmp_path, "a", "1", stop) is None


def test_a_watcher_started_ahead_of_its_lab_waits_for_it_and_ends_if_it_never_comes(tmp_path):
    holds, stop = FakeHolds(), threading.Event()
    runner = threading.Thread(target=watcher.run, args=(tmp_path, holds, stop, 0.01, 0.3))
    began = time.monotonic()
    runner.start()
    time.sleep(0.1)
    _record(tmp_path, "a", hold="1")  # submitted meanwhile: its hold request comes
    _until(lambda: "a" in holds.running)
    state.remove(tmp_path, "a")
    runner.join(5)  # once something was held, nothing held is the end at once
    assert not runner.is_alive()

    began = time.monotonic()
    lonely = threading.Thread(target=watcher.run, args=(tmp_path, FakeHolds(), stop, 0.01, 0.15))
    lonely.start()
    lonely.join(5)  # the start failed before it asked: the watcher ends by itself
    assert not lonely.is_alive() and 0.15 <= time.monotonic() - began < 2


def _held_by_a_fake_watcher(tmp_path: Path, monkeypatch, port_before: int) -> list[int]:
    """start_detached against a record that a thread (standing for the watcher) answers: the ports probed.
    ``port_before``: a live forward held the lab already on that port (0: none)."""
    from fabfile_lib import detached
    from fabfile_lib.settings import LabSettings

    settings = LabSettings.from_config({"login": "l", "state_dir": str(tmp_path)})
    state.save(tmp_path, LabRecord("a", {"login": "l"}, "1", "/r/a-00000000", "t", "compute", hold="h1",
                                   forward_port=port_before, forward_pid=os.getpid() if port_before else 0))
    monkeypatch.setattr(detached, "watcher_pid", lambda state_dir: os.getpid())  # a live watcher holds it
    monkeypatch.setattr(detached, "forward_alive", lambda record: record.forward_pid == os.getpid())
    probed: list[int] = []
    monkeypatch.setattr(detached.probes, "answers", lambda port, app: probed.append(port) or True)

    def watcher_answers() -> None:  # its own probe answered through its listener: it writes the port
        time.sleep(0.1)
        state.update(tmp_path, "a", forward_port=4242, forward_pid=os.getpid())

    thread = threading.Thread(target=watcher_answers)
    thread.start()
    held = detached.start_detached(settings, state.load(tmp_path, "a"), timeout=5)
    thread.join()
    assert held.forward_port in (port_before or 4242, 4242)
    return probed


def test_a_port_the_watcher_writes_for_this_hold_is_proof_and_an_older_one_is_tried(tmp_path, monkeypatch):
    assert _held_by_a_fake_watcher(tmp_path / "new", monkeypatch, port_before=0) == []  # no second probe
    assert _held_by_a_fake_watcher(tmp_path / "old", monkeypatch, port_before=5151) == [5151]


def test_a_waiting_hold_reads_the_record_only_when_it_was_written(tmp_path, monkeypatch):
    from fabfile_lib import held_lab

    _record(tmp_path, "a", hold="1")
    state.update(tmp_path, "a", node="n1", node_addr="10.0.0.9")  # the job runs: looked at every 0.01 s
    reads = []
    real = held_lab._asked
    monkeypatch.setattr(held_lab, "_asked", lambda *a: reads.append(1) or real(*a))
    threading.Timer(0.4, lambda: state.update(tmp_path, "a", remote_socket="/tmp/fl-x/jupyter.sock")).start()
    ready = held_lab.await_ready(tmp_path, "a", "1", threading.Event())
    assert ready is not None and ready.remote_socket and len(reads) == 2  # the first look, and after the write


def test_a_hold_asked_anew_keeps_the_lab_s_port(tmp_path, monkeypatch):
    """A watcher brought back (``tunnel --detach``) holds the lab on the port it had: the same URL."""
    from fabfile_lib import detached
    from fabfile_lib.settings import LabSettings

    settings = LabSettings.from_config({"login": "l", "state_dir": str(tmp_path)})
    state.save(tmp_path, LabRecord("a", {"login": "l"}, "1", "/r/a-00000000", "t", "compute", hold="h1",
                                   forward_port=5151, forward_pid=999999))
    monkeypatch.setattr(detached, "ensure_watcher", lambda state_dir: 1)
    asked = detached.request_hold(settings, state.load(tmp_path, "a"))
    assert asked.hold != "h1" and asked.forward_port == 5151 and state.load(tmp_path, "a").forward_port == 5151


def test_the_watchers_looks_intern_nothing_made_of_a_lab_name_or_a_pid(tmp_path, monkeypatch):
    """pathlib interns each part of a path it parses (CPython 3.11), and an interned string that dies leaves
    its slot behind: built anew at every look (a few a second per lab), the records' paths made the
    watcher re-size the interpreter's table of interned strings every few minutes, about 1 MiB each time."""
    import sys
    from types import SimpleNamespace

    from fabfile_lib.master_marks import MasterMarks

    _record(tmp_path, "alpha", hold="1")
    marks = MasterMarks(SimpleNamespace(socket_dir=tmp_path, key="k3y", user_managed=False,
                                        control_path=str(tmp_path / "k3y")))
    me = os.getpid()

    def looks() -> None:  # what the watcher does each turn, and a held lab each tick
        watcher.wanted(tmp_path)
        state.find(tmp_path, "alpha")
        state.stamp(tmp_path, "alpha")
        procs.alive(me, procs.start_time(me))
        marks.said_since(0)
        marks.running()

    looks()  # the first look makes what it keeps
    interned, real = [], sys.intern
    monkeypatch.setattr(sys, "intern", lambda s: interned.append(s) or real(s))
    for _ in range(3):
        looks()
    assert not [s for s in interned if "alpha" in s or str(me) in s or "k3y" in s]
