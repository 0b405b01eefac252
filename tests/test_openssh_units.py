"""OpenSSH transport policies without a cluster: ssh's messages, the master's words, settings, prompts."""

from __future__ import annotations

import shlex
import subprocess

import pytest

from fabfile_lib import LabError, master, openssh
from fabfile_lib.errors import AuthenticationError, ConnectError, HostKeyError, PromptNeeded
from fabfile_lib.hops import Prompter, choose_transport
from fabfile_lib.settings import LabSettings

CHANGED = """@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @
Offending ED25519 key in /tmp/kh:1
Host key for 10.0.0.2 has changed and you have requested strict checking.
Host key verification failed.
kex_exchange_identification: Connection closed by remote host
Connection closed by UNKNOWN port 65535
"""


@pytest.mark.parametrize("stderr,kind,words", [
    (CHANGED, HostKeyError, ["10.0.0.2", "does not match", "ssh-keygen -R 10.0.0.2"]),
    ("No ED25519 host key is known for 10.0.0.6 and you have requested strict checking.\n"
     "Host key verification failed.\n", HostKeyError, ["10.0.0.6", "not in the known hosts", "accept_new"]),
    ("u@10.0.0.2: Permission denied (publickey,keyboard-interactive).\n", AuthenticationError,
     ["Permission denied", "inv lab.login"]),
    ("ssh: connect to host 10.0.0.9 port 22: Connection refused\n", ConnectError, ["Connection refused"]),
    ("", ConnectError, ["exit status 255"]),
])
def test_ssh_failures_become_one_line_errors_of_their_kind(stderr, kind, words):
    err = openssh.explain(stderr, "cannot log in to login", 255)
    assert type(err) is kind
    assert "\n" not in str(err) and str(err).startswith("cannot log in to login")
    for word in words:
        assert word in str(err)


def test_a_proxy_that_died_before_ssh_is_recognised():
    assert openssh.proxy_died(CHANGED)
    assert not openssh.proxy_died("Permission denied (publickey).")


def test_destination_forms():
    assert openssh.destination("login") == "login"
    assert openssh.destination("bob@host") == "bob@host"
    assert openssh.destination("bob@host:2222") == "ssh://bob@host:2222"
    assert openssh.destination("host:2222") == "ssh://host:2222"
    with pytest.raises(LabError, match="port"):
        openssh.destination("host:ssh")


def _settings(tmp_path, body: str = "", **kw) -> LabSettings:
    cfg = tmp_path / "ssh_config"
    cfg.write_text(body + "Host login\n    HostName 10.9.9.6\n    StrictHostKeyChecking ask\n")
    return LabSettings.from_config({"login": "login", "ssh_config": str(cfg), "state_dir": str(tmp_path / "s"),
                                    **kw})


needs_ssh = pytest.mark.skipif(openssh.ssh_binary() is None, reason="no OpenSSH client")


@needs_ssh
def test_the_master_has_keepalive_no_questions_and_a_private_socket(tmp_path):
    plan = master.plan(_settings(tmp_path, keepalive=20, connect_timeout=7))
    words = " ".join(plan.argv())
    assert "ServerAliveInterval=20" in words and "ServerAliveCountMax=3" in words and "ConnectTimeout=7" in words
    assert "StrictHostKeyChecking=yes" in words  # "ask" would be a question mid-task: refuse unknown hosts
    assert "BatchMode=yes" in words and "BatchMode" not in " ".join(plan.argv(batch=False))
    socket_dir = master.control_dir(tmp_path / "s")
    assert plan.control_path.startswith(str(socket_dir)) and socket_dir.stat().st_mode & 0o777 == 0o700
    assert not plan.user_managed and plan.persist == "8h"
    assert master.plan(_settings(tmp_path)).control_path == plan.control_path  # one master per cluster
    other = master.plan(_settings(tmp_path, jump="elsewhere"))
    assert other.control_path != plan.control_path


@needs_ssh
def test_accept_new_and_a_users_own_controlpath(tmp_path):
    plan = master.plan(_settings(tmp_path, accept_new_host_keys=True))
    assert "StrictHostKeyChecking=accept-new" in plan.argv()
    own = master.plan(_settings(tmp_path, "Host *\n    ControlPath /tmp/own-%C\n    ControlMaster auto\n"))
    assert own.user_managed and not any(w.startswith("ControlPath=") for w in own.argv())


@needs_ssh
def test_the_proxy_command_escapes_percent_signs_for_ssh(tmp_path):
    plan = master.plan(_settings(tmp_path))
    plan = master.Master(plan.label, plan.dest, (*plan.options, "-o", "SetEnv=A=50%"), plan.control_path,
                         plan.persist, plan.connect_timeout)
    words = shlex.split(plan.proxy_command())
    assert "SetEnv=A=50%%" in words and words[-3:] == ["-W", "%h:%p", "login"]


@needs_ssh
def test_ssh_dash_G_is_the_source_of_truth(tmp_path):
    cfg = tmp_path / "ssh_config"
    inc = tmp_path / "included"
    inc.write_text("Host login\n    HostName 10.9.9.7\n    User carol\n    Port 2200\n")
    cfg.write_text(f"Include {inc}\nMatch originalhost login\n    HostKeyAlias login-alias\n")
    opts = openssh.effective("login", cfg)
    assert openssh.first(opts, "hostname") == "10.9.9.7" and openssh.first(opts, "user") == "carol"
    assert openssh.first(opts, "port") == "2200" and openssh.first(opts, "hostkeyalias") == "login-alias"


@pytest.mark.parametrize("kw,words", [
    ({"transport": "ssh"}, "lab.transport"),
    ({"persist": "forever"}, "lab.persist"),
    ({"keepalive": 0}, "lab.keepalive"),
    ({"ssh_config": "/no/such/config"}, "does not exist"),
])
def test_bad_transport_settings_are_one_line(kw, words):
    with pytest.raises(LabError, match=words) as exc:
        LabSettings.from_config({"login": "login", **kw})
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("value,expected", [("8h", "8h"), (0, "0"), (False, "0"), ("30m", "30m"), (3600, "3600")])
def test_persist_forms(value, expected):
    assert LabSettings.from_config({"login": "login", "persist": value}).persist == expected


def test_transport_choice(monkeypatch):
    s = LabSettings.from_config({"login": "login", "transport": "paramiko"})
    assert choose_transport(s) == "paramiko"
    monkeypatch.setattr(openssh, "ssh_binary", lambda: None)
    assert choose_transport(LabSettings.from_config({"login": "login"})) == "paramiko"
    with pytest.raises(LabError, match="no OpenSSH client"):
        choose_transport(LabSettings.from_config({"login": "login", "transport": "openssh"}))


def test_a_prompt_nobody_can_answer_is_refused_not_hung():
    handler = Prompter(interactive=False).handler("jump")
    with pytest.raises(PromptNeeded, match="second factor"):
        handler("", "", [("Verification code: ", False)])
    assert handler("", "", []) == []  # an empty round asks nothing


def test_a_hop_is_asked_at_most_once_per_run(monkeypatch):
    monkeypatch.setattr(openssh, "tty_available", lambda: True)
    monkeypatch.setattr("getpass.getpass", lambda prompt: "123456")
    prompter = Prompter(interactive=True)
    handler = prompter.handler("jump")
    assert handler("", "", [("Verification code: ", False)]) == ["123456"]
    with pytest.raises(AuthenticationError, match="refused"):
        handler("", "", [("Verification code: ", False)])
    assert prompter.handler("login")("", "", [("Code: ", False)]) == ["123456"]  # another hop: its own question


@needs_ssh
def test_a_dead_master_answers_check_quickly(tmp_path):
    plan = master.plan(_settings(tmp_path))
    info = plan.check()
    assert not info.alive and info.pid == 0
    assert subprocess.run(plan.argv("-O", "check", plan.dest), capture_output=True).returncode != 0


@needs_ssh
def test_after_logout_nothing_logs_in_by_itself(tmp_path):
    plan = master.plan(_settings(tmp_path))
    assert not plan.close(logout=True)  # nothing was open; the mark is left all the same
    with pytest.raises(PromptNeeded, match="logged out"):
        plan.open(interactive=False)
