"""Local records: paths, privacy, reads that create nothing, locked updates."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from fabfile_lib import LabError, state

REPO = Path(__file__).resolve().parents[2]


def test_record_paths_never_leave_the_state_directory(tmp_path):
    for bad in ("../x", "a/b", "..", ""):
        with pytest.raises(LabError, match="invalid"):
            state.path_for(tmp_path, bad)


def _record(**kw) -> state.LabRecord:
    return state.LabRecord("a", {"login": "l"}, "42", "/h/.fabfile-lab/a-0011aabb", "secret-token", "compute", **kw)


def test_reads_create_nothing(tmp_path):
    where = tmp_path / "never-made"
    assert state.names(where) == [] and not state.exists(where, "a")
    with pytest.raises(LabError, match="no lab named 'a'"):
        state.load(where, "a")
    assert not where.exists()


def test_records_are_private_values_written_whole(tmp_path):
    state.save(tmp_path, _record())
    path = tmp_path / "labs" / "a.json"
    assert oct(path.stat().st_mode & 0o777) == "0o600" and oct((tmp_path / "labs").stat().st_mode & 0o777) == "0o700"
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.load(tmp_path, "a").node = "c1"  # a value: changes go through state.update
    assert not list((tmp_path / "labs").glob("*.tmp*"))


def test_the_records_lock_holds_across_processes(tmp_path):
    """Two processes (forks of this one) each do 50 read-modify-writes under the lock that state.update
    takes: none is lost."""
    state.save(tmp_path, _record())

    def bump() -> None:
        for _ in range(50):
            with state._locked(tmp_path):
                r = state.load(tmp_path, "a")
                state._write(tmp_path, dataclasses.replace(r, app_port=r.app_port + 1))

    pids = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            code = 1
            try:
                bump()
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    assert [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids] == [0, 0]
    assert state.load(tmp_path, "a").app_port == 100


def test_an_update_of_a_lab_cancelled_meanwhile_writes_nothing(tmp_path):
    assert state.update(tmp_path, "gone", forward_port=1) is None
    assert not state.exists(tmp_path, "gone")


def _racers(tmp_path: Path, count: int) -> list[int]:
    """``count`` forks of this process each try to create the same lab at once; their exit codes (0: won)."""
    pids = []
    for i in range(count):
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            code = 2
            try:
                code = 0 if state.create(tmp_path, _record(local_port=1000 + i)) else 1
            finally:
                os._exit(code)
        pids.append(pid)
    return [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]


def test_a_name_is_claimed_by_exactly_one_start_whole_and_private(tmp_path):
    codes = _racers(tmp_path, 6)
    assert sorted(codes) == [0, 1, 1, 1, 1, 1]
    winner = 1000 + codes.index(0)
    path = tmp_path / "labs" / "a.json"
    assert state.load(tmp_path, "a").local_port == winner and oct(path.stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in (tmp_path / "labs").iterdir()] == ["a.json"]  # no temporary file left by anyone
    assert not state.create(tmp_path, _record(local_port=1)) and state.load(tmp_path, "a").local_port == winner


def test_create_takes_no_lock_unless_the_file_system_has_no_hard_links(tmp_path, monkeypatch):
    locked = []
    real = state.locks.exclusive
    monkeypatch.setattr(state.locks, "exclusive", lambda path: locked.append(path) or real(path))
    assert state.create(tmp_path / "a", _record()) and locked == []  # sbatch is reached without the lock library

    def no_links(src, dst):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(state.os, "link", no_links)
    assert state.create(tmp_path / "b", _record()) and len(locked) == 1
    assert not state.create(tmp_path / "b", _record()) and state.names(tmp_path / "b") == ["a"]
    assert sorted(p.name for p in (tmp_path / "b" / "labs").iterdir()) == ["a.json"]
