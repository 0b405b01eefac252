"""The kept login (ControlMaster): its words, its socket, logout."""

from __future__ import annotations

import dataclasses
import shlex
import subprocess

import pytest

from fabfile_lib import master, master_address, openssh, paths
from fabfile_lib.errors import PromptNeeded
from fabfile_lib.settings import LabSettings

needs_ssh = pytest.mark.skipif(openssh.ssh_binary() is None, reason="no OpenSSH client")


def _settings(tmp_path, body: str = "", **kw) -> LabSettings:
    cfg = tmp_path / "ssh_config"
    cfg.write_text(body + "Host login\n    HostName 10.9.9.6\n    StrictHostKeyChecking ask\n")
    return LabSettings.from_config({"login": "login", "ssh_config": str(cfg), "state_dir": str(tmp_path / "s"),
                                    **kw})


@needs_ssh
def test_the_master_has_keepalive_no_questions_and_a_private_socket(tmp_path):
    plan = master_address.describe(_settings(tmp_path, keepalive=20, connect_timeout=7))
    words = " ".join(plan.argv())
    assert "ServerAliveInterval=20" in words and "ServerAliveCountMax=3" in words and "ConnectTimeout=7" in words
    assert "StrictHostKeyChecking=yes" in words  # "ask" would be a question mid-task: refuse unknown hosts
    assert "BatchMode=yes" in words and "BatchMode" not in " ".join(plan.argv(batch=False))
    socket_dir = master_address.control_dir(tmp_path / "s")
    assert plan.control_path.startswith(str(socket_dir)) and socket_dir.stat().st_mode & 0o777 == 0o700
    assert not plan.user_managed and plan.persist == "8h"
    assert master_address.describe(_settings(tmp_path)).control_path == plan.control_path  # one master per cluster
    other = master_address.describe(_settings(tmp_path, jump="elsewhere"))
    assert other.control_path != plan.control_path


@needs_ssh
def test_accept_new_and_a_users_own_controlpath(tmp_path):
    plan = master_address.describe(_settings(tmp_path, accept_new_host_keys=True))
    assert "StrictHostKeyChecking=accept-new" in plan.argv()
    own = master_address.describe(_settings(tmp_path, "Host *\n    ControlPath /tmp/own-%C\n    ControlMaster auto\n"))
    assert own.user_managed and not any(w.startswith("ControlPath=") for w in own.argv())


@needs_ssh
def test_the_proxy_command_escapes_percent_signs_for_ssh(tmp_path):
    plan = master_address.describe(_settings(tmp_path))
    plan = dataclasses.replace(plan, options=(*plan.options, "-o", "SetEnv=A=50%"))
    words = shlex.split(plan.proxy_command())
    assert "SetEnv=A=50%%" in words and words[-3:] == ["-W", "%h:%p", "login"]


@needs_ssh
def test_a_dead_master_answers_check_quickly(tmp_path):
    plan = master.plan(_settings(tmp_path))
    info = plan.check()
    assert not info.alive and info.pid == 0
    assert subprocess.run(plan.address.argv("-O", "check", plan.address.dest), capture_output=True).returncode != 0


@needs_ssh
def test_after_logout_nothing_logs_in_by_itself(tmp_path):
    plan = master.plan(_settings(tmp_path))
    assert not plan.close(logout=True)  # nothing was open; the mark is left all the same
    with pytest.raises(PromptNeeded, match="logged out"):
        plan.open(interactive=False)


def test_a_planted_symlink_for_the_socket_directory_is_refused(tmp_path, monkeypatch):
    import os

    from fabfile_lib.errors import LabError

    elsewhere = tmp_path / "theirs"
    elsewhere.mkdir()
    long_state = tmp_path / ("x" * 90)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(paths.tempfile, "gettempdir", lambda: str(tmp_path))
    os.symlink(elsewhere, tmp_path / f"fabfile-lab-{os.getuid()}")
    with pytest.raises(LabError, match="not a directory of yours"):
        master_address.control_dir(long_state)


def _fake_ssh(monkeypatch, facts_output: str) -> list[list[str]]:
    """``ssh`` as the master's commands see it: a live master (pid 4242) and the login's FACTS_COMMAND."""
    ran: list[list[str]] = []

    def run(argv, timeout, detach=False):
        ran.append(argv)
        if "-O" in argv:
            return subprocess.CompletedProcess(argv, 0, "", "Master running (pid=4242)\n")
        return subprocess.CompletedProcess(argv, 0, facts_output, "")

    monkeypatch.setattr(master, "_run", run)
    return ran


@needs_ssh
def test_a_master_learns_its_login_nodes_home_and_names_once_and_is_not_checked_twice_in_a_row(tmp_path, monkeypatch):
    ran = _fake_ssh(monkeypatch, "login1\nlogin1.example.org\n/home/u\n")
    plan = master.plan(_settings(tmp_path))
    assert plan.open(interactive=False) is False  # alive already
    assert plan.home() == "/home/u" and plan.landed() == ("login1", "login1.example.org")
    assert [w for argv in ran for w in argv if w in ("check", "-T")] == ["check", "-T"]  # one check, one command
    again = master.plan(_settings(tmp_path))  # another run: kept beside the socket
    assert again.home() == "/home/u" and len(ran) == 3 and "check" in ran[-1]


@needs_ssh
def test_a_master_a_check_named_is_known_alive_by_its_process_without_a_second_check(tmp_path, monkeypatch):
    import json
    import os
    import socket

    ran: list[list[str]] = []

    def run(argv, timeout, detach=False):  # a live master: this very test process stands for it
        ran.append(argv)
        return subprocess.CompletedProcess(argv, 0, "", f"Master running (pid={os.getpid()})\n")

    monkeypatch.setattr(master, "_run", run)
    plan = master.plan(_settings(tmp_path))
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(plan.address.control_path)
        assert plan.open(interactive=False) is False and len(ran) == 1  # the first run asks -O check once
        assert master.plan(_settings(tmp_path)).open(interactive=False) is False and len(ran) == 1  # then none
        recorded = plan.address.socket_dir / f"{plan.address.key}.process"
        assert recorded.stat().st_mode & 0o777 == 0o600
        recorded.write_text(json.dumps({"pid": os.getpid(), "started": "1"}))  # another process on that pid
        assert master.plan(_settings(tmp_path)).open(interactive=False) is False and len(ran) == 2
    os.unlink(plan.address.control_path)  # the socket gone: whatever runs, -O check decides
    master.plan(_settings(tmp_path)).open(interactive=False)
    assert len(ran) >= 3 and "check" in ran[2]


@needs_ssh
@pytest.mark.parametrize("output", ["login1\n../etc\n", "login1\n/home/u\x1b[2J\n", "$(id)\n/home/u\n", ""])
def test_a_home_or_names_that_are_not_what_they_should_be_are_not_learnt(tmp_path, monkeypatch, output):
    from fabfile_lib.errors import ConnectError

    _fake_ssh(monkeypatch, output)
    plan = master.plan(_settings(tmp_path))
    assert plan.facts() is None and plan.landed() == ()
    with pytest.raises(ConnectError, match="home directory"):
        plan.home()
    assert not list(plan.address.socket_dir.glob("*.landed"))


@needs_ssh
def test_ssh_dash_G_is_asked_once_per_run_for_the_same_words(tmp_path, monkeypatch):
    asked = []
    real = subprocess.run
    monkeypatch.setattr(openssh.subprocess, "run", lambda argv, **kw: asked.append(argv) or real(argv, **kw))
    settings, memo = _settings(tmp_path), {}
    address = master_address.describe(settings, memo=memo)
    from fabfile_lib.hop_spec import resolve_openssh

    assert resolve_openssh("login", settings, memo=memo).hostname == "10.9.9.6" and len(asked) == 1
    assert address.dest == "login"
    master_address.describe(settings)  # without a memo (another run): asked again, an edited config read anew
    assert len(asked) == 2
