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
