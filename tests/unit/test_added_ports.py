"""Forwards added to a running lab: what a request means (added_ports) and how a hold keeps them
(forwards.added_forwards), on fakes."""

from __future__ import annotations

import contextlib

import pytest

from fabfile_lib import added_ports
from fabfile_lib.added_ports import Added, Target
from fabfile_lib.errors import LabError
from fabfile_lib.forwards.added_forwards import AddedForwards, AddedSource, Sides
from fabfile_lib.forwards.forward import Forward
from fabfile_lib.program import _target_word


@pytest.mark.parametrize(("text", "side", "port", "socket"), [
    ("8787", "node", 8787, ""), ("login:6006", "login", 6006, ""), ("/tmp/dask.sock", "node", 0, "/tmp/dask.sock"),
])
def test_a_target_is_a_node_port_a_login_port_or_a_socket_on_the_node(text, side, port, socket):
    target = Target.parse(text)
    assert (target.side, target.port, target.socket) == (side, port, socket)
    assert str(target) == text


@pytest.mark.parametrize("text", ["0", "65536", "http", "8787;id", "login:", "login:/x.sock", "/a/../etc",
                                  "/tmp/$(id)", "relative.sock"])
def test_anything_else_is_one_line_that_says_what_to_give(text):
    with pytest.raises(LabError) as exc:
        Target.parse(text)
    assert "\n" not in str(exc.value)


def test_the_far_end_is_the_node_s_loopback_through_the_node_and_its_address_from_the_login_node():
    assert Target.parse("8787").far("10.0.0.5", through_node=True) == "127.0.0.1:8787"
    assert Target.parse("8787").far("10.0.0.5", through_node=False) == "10.0.0.5:8787"
    assert Target.parse("8787").far("fd00::5", through_node=False) == "[fd00::5]:8787"
    assert Target.parse("login:6006").far("10.0.0.5", through_node=True) == "127.0.0.1:6006"
    assert Target.parse("/tmp/s.sock").far("10.0.0.5", through_node=True) == "/tmp/s.sock"
    with pytest.raises(LabError, match="lab.via: compute"):
        Target.parse("/tmp/s.sock").far("10.0.0.5", through_node=False)


def test_who_else_can_reach_what_it_forwards_is_said():
    assert Target.parse("8787").shared_with("node7", "login1") == "other users of node7"
    assert Target.parse("login:6006").shared_with("node7", "login1") == "other users of login1"
    assert Target.parse("/tmp/s.sock").shared_with("node7", "login1") == ""


def test_a_record_s_entries_that_are_not_whole_are_left_out():
    entries = [{"to": "8787", "port": 4000, "state": "up"}, {"to": "8787;id", "port": 1}, {"port": 3}, "junk",
               {"to": "login:22", "port": "x"}]
    assert added_ports.from_record(entries) == (Added("8787", 4000, "up"),)
    assert added_ports.from_record(None) == ()
    assert added_ports.find(added_ports.from_record(entries), "4000").to == "8787"


class _Fakes:
    """Openers that record what they opened and closed; a record's entries that a test changes."""

    def __init__(self, wanted: tuple[Added, ...]):
        self.wanted, self.opened, self.closed, self.reports = wanted, [], [], []

    def report(self, to: str, fate: str, note: str) -> None:  # as the record would keep it
        self.reports.append((to, fate, note))
        self.wanted = added_ports.with_state(self.wanted, to, fate, note)

    def opener(self, side: str, fail: bool = False):
        @contextlib.contextmanager
        def open_(far: str, port: int):
            if fail:
                raise LabError("administratively prohibited")
            self.opened.append((side, far, port))
            try:
                yield Forward(port, far)
            finally:
                self.closed.append((side, far, port))
        return open_

    def forwards(self, through_node: bool = True, fail_login: bool = False) -> AddedForwards:
        source = AddedSource(lambda: self.wanted, self.report)
        sides = Sides(self.opener("node"), self.opener("login", fail_login), "10.0.0.5", through_node)
        return AddedForwards(source, sides, log=lambda _text: None)


def test_a_hold_opens_what_is_asked_once_closes_what_is_no_longer_asked_and_all_at_its_end():
    fakes = _Fakes((Added("8787", 4000), Added("login:6006", 4001)))
    with fakes.forwards() as held:
        held.sync()
        held.sync()
        assert fakes.opened == [("node", "127.0.0.1:8787", 4000), ("login", "127.0.0.1:6006", 4001)]
        assert fakes.reports == [("8787", "up", ""), ("login:6006", "up", "")]
        fakes.wanted = (Added("login:6006", 4001, "up"),)
        held.sync()
        assert fakes.closed == [("node", "127.0.0.1:8787", 4000)]
    assert fakes.closed[-1] == ("login", "127.0.0.1:6006", 4001)


def test_a_forward_that_fails_is_said_once_and_tried_again_only_on_the_next_connection():
    fakes = _Fakes((Added("login:6006", 4001),))
    held = fakes.forwards(fail_login=True)
    held.sync()
    held.sync()
    assert fakes.reports == [("login:6006", "failed", "administratively prohibited")]
    assert fakes.forwards().sync() is None and fakes.opened == [("login", "127.0.0.1:6006", 4001)]


def test_a_socket_in_a_mode_that_ends_on_the_login_node_fails_with_what_to_do():
    fakes = _Fakes((Added("/tmp/s.sock", 4002),))
    fakes.forwards(through_node=False).sync()
    assert fakes.reports[0][:2] == ("/tmp/s.sock", "failed") and "lab.via: compute" in fakes.reports[0][2]


def test_asked_again_while_it_runs_it_is_said_to_be_up_without_a_second_forward():
    fakes = _Fakes((Added("8787", 4000),))
    held = fakes.forwards()
    held.sync()
    fakes.wanted = (Added("8787", 4000, "asked"),)
    held.sync()
    held.sync()
    assert len(fakes.opened) == 1 and fakes.reports == [("8787", "up", ""), ("8787", "up", "")]


@pytest.mark.parametrize(("argv", "expected"), [
    (["p", "forward", "--name", "n", "8787"], ["p", "forward", "--name", "n", "--target", "8787"]),
    (["p", "forward", "-n", "n", "--list"], ["p", "forward", "-n", "n", "--list"]),
    (["p", "forward", "login:6006", "--open"], ["p", "forward", "--target", "login:6006", "--open"]),
    (["p", "forward", "--stop", "8787"], ["p", "forward", "--stop", "8787"]),
    (["p", "status"], ["p", "status"]),
])
def test_the_command_takes_the_target_as_a_bare_word(argv, expected):
    assert _target_word(argv) == expected
