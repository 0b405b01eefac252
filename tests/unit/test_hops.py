"""Hop resolution, the transport choice and keyboard-interactive prompts."""

from __future__ import annotations

import os
import types

import pytest

from fabfile_lib import LabError, hops, openssh, openssh_hops
from fabfile_lib.errors import AuthenticationError, ConnectError, PromptNeeded
from fabfile_lib.hops import Prompter, choose_transport, load_ssh_config, resolve
from fabfile_lib.settings import LabSettings


def _settings(**kw) -> LabSettings:
    return LabSettings.from_config({"login": "login", **kw})


def test_resolve_aliases_proxyjump_and_proxycommand(tmp_path):
    cfg = tmp_path / "config"
    cfg.write_text(
        "Host work-via-jump\n  HostName 10.1.2.3\n  User alice\n  Port 2222\n  IdentityFile ~/.ssh/k\n"
        "  ProxyCommand ssh alice@jump.example -W %h:%p\n"
        "Host login2\n  HostName 10.1.2.4\n  ProxyJump jump-server\n  StrictHostKeyChecking accept-new\n"
        "  UserKnownHostsFile /tmp/kh1 /tmp/kh2\n")
    conf = load_ssh_config(cfg)
    s = _settings()
    a = resolve("work-via-jump", conf, s)
    assert (a.hostname, a.user, a.port) == ("10.1.2.3", "alice", 2222)
    assert a.proxy_command == "ssh alice@jump.example -W 10.1.2.3:2222" and not a.proxy_jump
    assert a.identities[0].endswith("/.ssh/k") and not a.accept_new
    b = resolve("bob@login2:2200", conf, s)
    assert (b.hostname, b.user, b.port, b.proxy_jump) == ("10.1.2.4", "bob", 2200, "jump-server")
    assert b.accept_new and b.known_hosts == ("/tmp/kh1", "/tmp/kh2")
    c = resolve("plain.example", conf, s)
    assert c.hostname == "plain.example" and c.port == 22 and c.known_hosts[0].endswith(".ssh/known_hosts")


def test_bad_port_in_host_spec():
    with pytest.raises(LabError, match="port"):
        resolve("host:ssh", load_ssh_config(None), _settings())


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


def test_remote_scripts_survive_a_csh_login_shell():
    """csh/tcsh cannot take a multi-line quoted `bash -c` or `export K=V &&`: scripts go base64 in a pipe."""
    import shutil
    import subprocess

    from fabfile_lib.hops import bash_script

    tcsh = shutil.which("tcsh")
    if not tcsh:  # a developer's machine; CI has it (tests/run installs it) and must run this
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("tcsh is missing under CI: tests/run installs it")
        pytest.skip("tcsh is not installed")
    command = bash_script("set -u\nfor w in \"$@\"; do\n  echo \"<$w>\"\ndone", "a b", "$HOME", "it's")
    out = subprocess.run([tcsh, "-c", command], capture_output=True, text=True, timeout=10)
    assert out.stdout.splitlines() == ["<a b>", "<$HOME>", "<it's>"], out.stderr


class _Master:
    def __init__(self, pin: str, opens: bool, landed: tuple[str, ...] = ()):
        self.address, self.opens, self._landed = types.SimpleNamespace(pin=pin), opens, landed

    def open(self, interactive: bool) -> bool:
        if not self.opens:
            raise ConnectError("Connection closed by UNKNOWN port 65535")
        return True

    def landed(self) -> tuple[str, ...]:
        return self._landed


@pytest.mark.parametrize("landed,ok", [(("login1",), True), (("login2",), False)])
def test_a_pinned_node_whose_name_does_not_resolve_is_reached_through_the_clusters_name(monkeypatch, landed, ok):
    """The pinned master cannot connect (the node's own name does not resolve from the proxy): the
    cluster's own master is used when it lands on that node; otherwise one line names the node."""
    monkeypatch.setattr(openssh_hops, "plan",
                        lambda settings, pin="", memo=None: _Master(pin, opens=not pin, landed=landed))
    settings = LabSettings.from_config({"login": "cluster", "transport": "openssh"})
    pinned = hops.Hops(settings, interactive=False, pin="login1")
    if ok:
        assert pinned.master.address.pin == "" and pinned.master.landed() == ("login1",)
    else:
        with pytest.raises(ConnectError, match="login node login1 cannot be reached by its own name"):
            pinned.master  # noqa: B018 - the property opens the master


def test_the_paramiko_carrier_learns_the_login_s_home_and_names_in_one_command(monkeypatch):
    """As the OpenSSH master does (``untrusted.FACTS_COMMAND``): once per login, what an rc file prints
    before it ignored, and learnt again after a close."""
    from fabfile_lib import paramiko_hops, untrusted

    carrier = paramiko_hops.ParamikoCarrier(_settings(transport="paramiko"), pin="", interactive=False,
                                            prompter=Prompter(False))
    ran = []
    monkeypatch.setattr(carrier, "login", lambda: "conn")
    monkeypatch.setattr(paramiko_hops, "run", lambda conn, argv, check: ran.append(argv) or
                        "Welcome\n\nlogin1\nlogin1.example.org\n/home/u\n")
    assert carrier.home() == "/home/u" and carrier.login_names() == ("login1", "login1.example.org")
    assert ran == [untrusted.FACTS_COMMAND]
    carrier.close()
    assert carrier.home() == "/home/u" and len(ran) == 2
