"""The user's OpenSSH: ssh -G, destinations, and ssh's failures as one-line errors."""

from __future__ import annotations

import pytest

from fabfile_lib import LabError, openssh
from fabfile_lib.errors import AuthenticationError, ConnectError, ForwardingRefused, HostKeyError

needs_ssh = pytest.mark.skipif(openssh.ssh_binary() is None, reason="no OpenSSH client")


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
    ("Access denied by pam_slurm_adopt: you have no active jobs on this node\nConnection closed by 10.0.1.5 port 22\n",
     ConnectError, ["refuses ssh from outside a job", "pam_slurm_adopt: you have no active jobs"]),
    ("channel 0: open failed: administratively prohibited: open failed\nstdio forwarding failed\n", ForwardingRefused,
     ["does not allow this forwarding", "administratively prohibited"]),
    ("Stdio forwarding request failed: Session open refused by peer\n", ForwardingRefused,
     ["does not allow this forwarding", "Session open refused by peer"]),
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


@needs_ssh
def test_ssh_dash_G_is_the_source_of_truth(tmp_path):
    cfg = tmp_path / "ssh_config"
    inc = tmp_path / "included"
    inc.write_text("Host login\n    HostName 10.9.9.7\n    User carol\n    Port 2200\n")
    cfg.write_text(f"Include {inc}\nMatch originalhost login\n    HostKeyAlias login-alias\n")
    opts = openssh.effective("login", cfg)
    assert openssh.first(opts, "hostname") == "10.9.9.7" and openssh.first(opts, "user") == "carol"
    assert openssh.first(opts, "port") == "2200" and openssh.first(opts, "hostkeyalias") == "login-alias"
