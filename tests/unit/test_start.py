"""The library's start on fakes: what is cancelled, what is kept, ``lab.via: auto``, and what it reports."""

from __future__ import annotations

from dataclasses import replace

import pytest

from fabfile_lib import lab, start, via_memory
from fabfile_lib.errors import ConnectError, JobEnded, LabError, ModeUnreachable, WaitTimeout
from fabfile_lib.settings import LabSettings
from fabfile_lib.state import LabRecord


class FakeCluster:
    """lab.submit/wait/cancel/settings_for as a cluster answers them: ``outcomes`` per mode (a record
    field to set, or an exception to raise from the wait)."""

    def __init__(self, monkeypatch, outcomes: dict[str, BaseException | None]):
        self.outcomes, self.submitted, self.cancelled = outcomes, [], []
        monkeypatch.setattr(lab, "submit", self.submit)
        monkeypatch.setattr(lab, "wait", self.wait)
        monkeypatch.setattr(lab, "cancel", lambda settings, record, hops: self.cancelled.append(record.job_id))
        monkeypatch.setattr(lab, "settings_for", lambda record, **kw: LabSettings.from_config(
            {**record.settings, **kw}, name=record.name))

    def submit(self, settings: LabSettings, hops) -> LabRecord:
        job = str(40 + len(self.submitted))
        self.submitted.append(settings.via)
        from dataclasses import asdict

        return LabRecord(settings.name, asdict(settings), job, f"/h/.fabfile-lab/{settings.name}-0011aabb",
                         "t" * 43, settings.via)

    def wait(self, settings, record, hops, progress=None, timeout=None, handoff=False) -> LabRecord:
        failure = self.outcomes[record.via]
        if progress:
            progress("queued")
        if failure is not None:
            raise failure
        return replace(record, remote_port=8888, node="n1")


@pytest.fixture
def settings(tmp_path):
    return LabSettings.from_config({"login": "l", "ssh_config": "", "state_dir": str(tmp_path), "via": "auto"})


def test_auto_cancels_a_mode_that_cannot_reach_jupyter_and_remembers_the_one_that_does(monkeypatch, settings):
    cluster = FakeCluster(monkeypatch, {"compute": ModeUnreachable("refused"), "login": None, "reverse": None})
    seen: dict[str, list] = {"submitted": [], "queue": [], "next": []}
    events = start.StartEvents(submitted=lambda r: seen["submitted"].append(r.job_id),
                               queue=seen["queue"].append, next_mode=lambda r, e: seen["next"].append((r.via, str(e))))
    started = start.start(settings, hops=None, events=events)
    assert started.record.via == "login" and started.record.reachable and not started.detached
    assert cluster.submitted == ["compute", "login"] and cluster.cancelled == ["40"]
    assert seen == {"submitted": ["40", "41"], "queue": ["queued", "queued"], "next": [("compute", "refused")]}
    assert via_memory.remembered(settings) == "login"
    assert via_memory.candidates(settings)[0] == "login"  # tried first next time


def test_the_last_mode_that_cannot_reach_jupyter_is_cancelled_and_the_error_says_so(monkeypatch, settings):
    cluster = FakeCluster(monkeypatch, dict.fromkeys(("compute", "login", "reverse"), ModeUnreachable("no way")))
    with pytest.raises(ModeUnreachable, match=r"no way \(job 42 cancelled, nothing kept\)"):
        start.start(settings, hops=None)
    assert cluster.cancelled == ["40", "41", "42"] and via_memory.remembered(settings) == ""


@pytest.mark.parametrize("failure,kind,said", [
    (WaitTimeout("no answer in 300 s"), WaitTimeout, "was cancelled and nothing kept: raise lab.wait_timeout"),
    (JobEnded("job 40 ended"), JobEnded, "its files were removed; nothing kept"),
    (KeyboardInterrupt(), LabError, "interrupted: job 40 cancelled, nothing left behind"),
])
def test_a_job_that_never_answered_is_cancelled(monkeypatch, settings, failure, kind, said):
    cluster = FakeCluster(monkeypatch, {"compute": failure})
    with pytest.raises(kind, match=said):
        start.start(replace(settings, via="compute"), hops=None)
    assert cluster.cancelled == ["40"]


def test_a_failure_of_the_cluster_or_the_connection_keeps_the_job(monkeypatch, settings):
    cluster = FakeCluster(monkeypatch, {"compute": ConnectError("login node unreachable")})
    with pytest.raises(ConnectError, match=r"job 40 and its record are kept: `.*wait --name default` goes on"):
        start.start(replace(settings, via="compute"), hops=None)
    assert cluster.cancelled == []


def test_a_refused_forward_skips_the_modes_the_same_refusal_rules_out(monkeypatch, settings):
    from fabfile_lib import modes
    from fabfile_lib.errors import ForwardingRefused

    tcp = modes.refusal("compute", frozenset({modes.TCP}), "login1", "administratively prohibited")
    assert "login1 refuses TCP forwarding" in str(tcp) and "set lab.via to reverse" in str(tcp)
    assert "login" not in str(tcp).split("set lab.via to")[1]
    both = frozenset({modes.TCP, modes.STREAMLOCAL})
    cluster = FakeCluster(monkeypatch, {"compute": tcp, "reverse": ForwardingRefused("both refused", both)})
    with pytest.raises(ForwardingRefused, match=r"both refused \(job 41 cancelled, nothing kept\)"):
        start.start(settings, hops=None)
    assert cluster.submitted == ["compute", "reverse"]  # login mode needs TCP forwarding too: never tried


def test_what_a_refusal_leaves_possible():
    from fabfile_lib import modes

    assert modes.possible(frozenset()) == ["compute", "login", "reverse"]
    assert modes.possible(frozenset({modes.TCP})) == ["reverse"]
    assert modes.possible(frozenset({modes.STREAMLOCAL}), but="reverse") == ["compute", "login"]
    assert modes.possible(frozenset({modes.TCP, modes.STREAMLOCAL})) == []
    none_left = modes.refusal("reverse", frozenset({modes.TCP, modes.STREAMLOCAL}), "login1", "x")
    assert "no mode can reach Jupyter" in str(none_left) and "set lab.via" not in str(none_left)
    assert "\n" not in str(none_left)


def test_detached_the_watcher_s_forward_is_the_probe_and_its_failure_is_judged_as_the_wait_would(monkeypatch,
                                                                                                settings):
    cluster = FakeCluster(monkeypatch, {"compute": None, "login": None, "reverse": None})
    watchers = []  # asked to hold each lab as soon as its job is submitted (the watcher starts then)
    monkeypatch.setattr(lab, "request_hold", lambda settings, record: watchers.append(record.job_id) or record)
    handed = []
    monkeypatch.setattr(cluster, "wait", lambda *a, handoff=False, **kw: handed.append(handoff) or replace(
        a[1], remote_port=8888, node="n1"))
    monkeypatch.setattr(lab, "wait", cluster.wait)

    def watcher_fails(settings, record):
        raise ConnectError(f"nothing answers via {record.via}")

    monkeypatch.setattr(lab, "start_detached", watcher_fails)
    monkeypatch.setattr(lab, "unreachable", lambda hops, record, exc: ModeUnreachable(f"{record.via}: {exc}"))
    with pytest.raises(ModeUnreachable, match="reverse: nothing answers via reverse"):
        start.start(settings, hops=None, detach=True)
    assert handed == [True, True, True] and cluster.cancelled == ["40", "41", "42"]  # each mode, then none
    assert watchers == ["40", "41", "42"]


def test_a_start_whose_url_answered_in_the_background_is_announced_without_asking_again(monkeypatch, settings):
    from fabfile_lib.tasks import lab as lab_tasks

    asked, announced = [], []
    monkeypatch.setattr(lab_tasks.lab, "start_detached", lambda s, rec: asked.append(rec.name) or rec)
    monkeypatch.setattr(lab_tasks, "_announce", lambda rec, port, *a: announced.append((rec.name, port)))
    record = LabRecord("a", {}, "42", "/h/.fabfile-lab/a-0011aabb", "t", "compute", forward_port=4242)
    lab_tasks._detached(settings, record, browser=False, held=True)  # start --detach: its URL just answered
    lab_tasks._detached(settings, record, browser=False)  # tunnel --detach: asked for and awaited
    assert asked == ["a"] and announced == [("a", 4242), ("a", 4242)]
