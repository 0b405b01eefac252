"""The ``fabfile-lab`` command as a researcher installs it: a wheel built from the repository, installed
(not editable) into a fresh venv outside it, run from a directory with no tasks.py against the sandbox."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest
import requests

from .conftest import REPO, assert_nothing_left

pytestmark = pytest.mark.sandbox


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The ``fabfile-lab`` of a fresh venv into which only the wheel (and its dependencies) went."""
    where = tmp_path_factory.mktemp("installed")
    build = subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(where / "dist"), REPO],
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    wheel = next((where / "dist").glob("fabfile_lab-*.whl"))
    subprocess.run([sys.executable, "-m", "venv", str(where / "venv")], check=True, timeout=120)
    # Away from the repository (its egg-info would count as "already installed") and its PYTHONPATH.
    pip = subprocess.run([str(where / "venv" / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                          str(wheel)], capture_output=True, text=True, timeout=600, cwd=where, env=_env(where))
    assert pip.returncode == 0, pip.stderr[-2000:]
    return where / "venv" / "bin" / "fabfile-lab"


def _env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FABFILE_", "INVOKE_", "FLAB_", "PYTHON"))}
    return {**env, "XDG_CONFIG_HOME": str(home / "config"), "XDG_STATE_HOME": str(home / "state")}


def test_the_wheel_has_what_the_command_needs_and_nothing_from_the_repository(installed, tmp_path):
    python = installed.parent / "python"
    where = subprocess.run([str(python), "-c", "import fabfile_lib, fabfile_lib.batch_script as b; "
                            "print(fabfile_lib.__file__); print(len(b._BODY))"],
                           cwd=tmp_path, capture_output=True, text=True, env=_env(tmp_path), check=True).stdout
    assert str(installed.parent.parent) in where.splitlines()[0] and not where.startswith(REPO)
    helped = subprocess.run([str(installed), "--help"], cwd=tmp_path, capture_output=True, text=True,
                            env=_env(tmp_path))
    assert helped.returncode == 0 and "fabfile-lab" in helped.stdout
    listed = subprocess.run([str(installed), "--list"], cwd=tmp_path, capture_output=True, text=True,
                            env=_env(tmp_path)).stdout
    assert "start" in listed and "config" in listed


def test_config_init_then_doctor_start_and_cancel_from_any_directory(installed, sbx, tmp_path):
    work = tmp_path / "anywhere"
    work.mkdir()
    assert not (work / "tasks.py").exists()
    env = _env(tmp_path)
    child = pexpect.spawn(str(installed), ["config", "init"], cwd=str(work), env=env, encoding="utf-8", timeout=120)
    for question, answer in (("ssh config file", str(sbx.ssh_config)), ("login host", "login"), ("jump host", ""),
                             ("partition", "debug"), ("time limit", "00:30:00"),
                             ("environment", f"venv:{sbx.venv}")):
        child.expect(question)
        child.sendline(answer)
    child.expect(pexpect.EOF)
    said = child.before
    child.close()
    assert child.exitstatus == 0, said
    assert "✓ login node login" in said and "✗" not in said, said
    config = tmp_path / "config" / "fabfile-lab" / "config.yaml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(installed), *args], cwd=work, capture_output=True, text=True, env=env, timeout=240)

    doctor = run("doctor")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    started = run("start", "--detach", "--json", "--no-browser")
    assert started.returncode == 0, started.stderr
    lab = json.loads(started.stdout)
    status_url = lab["url"].replace("/lab?", "/api/status?")
    assert requests.get(status_url, timeout=10).status_code == 200
    status = run("status")
    assert "Jupyter on a private socket" in status.stdout and "(answers)" in status.stdout, status.stdout
    cancelled = run("cancel")
    assert cancelled.returncode == 0, cancelled.stderr
    assert_nothing_left(sbx)
    again = run("cancel")
    assert again.returncode == 1 and "`fabfile-lab list --cluster`" in again.stderr, again.stderr
