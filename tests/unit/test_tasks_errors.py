"""Errors as a user sees them (tasks/_errors.py): exit codes, config files Invoke cannot read."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from invoke.main import program as invoke_program

from fabfile_lib.errors import ConfigError, ConnectError, JobEnded, LabError, WaitTimeout
from fabfile_lib.settings import merge_conflict
from fabfile_lib.tasks._errors import exit_code

from .forked import run_forked

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("exc,code", [(ConfigError("x"), 2), (JobEnded("x"), 3), (WaitTimeout("x"), 4),
                                      (ConnectError("x"), 1), (LabError("x"), 1)])
def test_exit_codes(exc, code):
    assert exit_code(exc) == code



def _inv(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": f"{os.path.dirname(sys.executable)}:/usr/bin:/bin", "HOME": str(tmp_path),
           "XDG_STATE_HOME": str(tmp_path / "state")}
    return run_forked(lambda: invoke_program.run(), ["inv", *args], cwd=REPO, env=env)


@pytest.mark.parametrize("text,words", [
    ("lab: hello\n", ["lab must be a mapping", "bad.yaml"]),
    ("sandbox: 3\n", ["sandbox must be a mapping", "bad.yaml"]),
    ("lab:\n  name: {a: 1}\n", ["lab.name must be a single value"]),
    ("lab: [\n", ["cannot be read", "bad.yaml"]),
])
def test_a_file_invoke_cannot_merge_or_parse_is_one_line(tmp_path, text, words):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    proc = _inv(tmp_path, "-f", str(path), "lab.status")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for word in words:
        assert word in lines[0]


def test_a_config_file_that_does_not_exist_is_an_error_not_ignored(tmp_path):
    proc = _inv(tmp_path, "-f", str(tmp_path / "nope.yaml"), "lab.status")
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: config file {tmp_path / 'nope.yaml'} does not exist: check the path " \
                                  "given with -f."


def test_merge_conflicts_are_found_by_dotted_key():
    base = {"lab": {"name": "x", "sbatch": {"time": "1"}}, "run": {}}
    assert merge_conflict(base, {"lab": "s"}) == ("lab", "s")
    assert merge_conflict(base, {"lab": {"sbatch": "p"}}) == ("lab.sbatch", "p")
    assert merge_conflict(base, {"lab": {"name": {"a": 1}}}) == ("lab.name", {"a": 1})
    assert merge_conflict(base, {"lab": {"name": "y", "new": {"a": 1}}}) is None
