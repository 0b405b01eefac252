"""Local records: paths, privacy, reads that create nothing, locked updates."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
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
    """Two processes each do 50 read-modify-writes under the lock that state.update takes: none is lost."""
    state.save(tmp_path, _record())
    bump = ("import sys; from dataclasses import replace; from pathlib import Path; from fabfile_lib import state\n"
            "d = Path(sys.argv[1])\n"
            "for _ in range(50):\n"
            "    with state._locked(d):\n"
            "        r = state.load(d, 'a')\n"
            "        state._write(d, replace(r, app_port=r.app_port + 1))\n")
    procs = [subprocess.Popen([sys.executable, "-c", bump, str(tmp_path)], cwd=REPO) for _ in range(2)]
    assert all(p.wait(60) == 0 for p in procs)
    assert state.load(tmp_path, "a").app_port == 100


def test_an_update_of_a_lab_cancelled_meanwhile_writes_nothing(tmp_path):
    assert state.update(tmp_path, "gone", forward_port=1) is None
    assert not state.exists(tmp_path, "gone")
