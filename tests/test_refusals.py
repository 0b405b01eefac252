"""A login node that forbids forwarding (sshd ``AllowTcpForwarding no``, ``AllowStreamLocalForwarding
no``: the sandbox login node's port 2223), as some sites have it: every mode is told at its first probe,
in one line that names the host and the refusal and suggests only what the same refusal leaves possible;
the job is cancelled and nothing is left."""

from __future__ import annotations

import time

import pytest

from .conftest import assert_nothing_left, one_line_error

pytestmark = pytest.mark.sandbox


@pytest.mark.parametrize("via,hop", [("compute", ""), ("login", ""), ("reverse", "refused"), ("reverse", "allowed")])
def test_a_login_node_without_forwarding_is_one_line_and_suggests_nothing_it_rules_out(lab_cli, sbx, via, hop):
    """``hop``: where a reverse-mode job's own ssh goes -- the same refusing port, or the node's plain one
    (then only the laptop's forward to the socket there is refused)."""
    target = f"{sbx.hostname('login')}-noforward" if hop == "refused" else ""
    name = f"nofwd-{via}-{hop or 'laptop'}"
    cli = lab_cli(login="login-noforward", via=via, reverse_target=target, wait_timeout=120)
    began = time.monotonic()
    err = one_line_error(cli("lab.start", "--name", name, "--detach", "--no-browser", timeout=180))
    took = time.monotonic() - began
    assert "refuses" in err and "forwarding" in err and "cancelled, nothing kept" in err, err
    if hop == "refused":  # the job's hop was refused both ways: a socket, then a port
        assert "the login node" in err and "no mode can reach Jupyter" in err and "set lab.via" not in err, err
    elif hop == "allowed":
        assert "login-noforward refuses Unix-socket (stream-local) forwarding" in err, err
        assert "set lab.via to compute or login" in err, err
    else:
        assert "login-noforward refuses TCP forwarding" in err, err
        advised = err.split("set lab.via to ", 1)[1].split(",")[0]
        assert advised.startswith("reverse") and "login" not in advised and "compute" not in advised, err
    assert took < 15, f"{took:.0f} s: the refusal was waited out, not heard"  # (it was the whole wait_timeout)
    print(f"{name}: refused in {took:.1f} s")
    assert_nothing_left(sbx, cli, name)
