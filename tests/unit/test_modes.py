"""The ways of reaching Jupyter: each mode's endpoint, the reverse hop's port, the batch script's lines."""

from __future__ import annotations

import pytest

from fabfile_lib import batch_script, modes
from fabfile_lib.errors import LabError
from fabfile_lib.settings import LabSettings

RUNTIME = {"port": 41234, "hostname": "10.0.1.5"}


def test_every_via_has_one_mode_and_settings_accept_exactly_those():
    assert set(modes.MODES) == set(modes.Via)
    for name in modes.NAMES:
        assert LabSettings.from_config({"login": "l", "via": name}).via == name
    with pytest.raises(LabError, match="compute, login, reverse"):
        LabSettings.from_config({"login": "l", "via": "direct"})


SOCKET = {"port": 0, "sock": "/tmp/fl-Ab12Cd34/jupyter.sock", "hostname": "localhost"}


@pytest.mark.parametrize("via,runtime,endpoint", [
    ("compute", SOCKET, modes.Endpoint(socket="/tmp/fl-Ab12Cd34/jupyter.sock")),  # the node's private socket
    ("compute", RUNTIME, modes.Endpoint("127.0.0.1", 41234)),  # Paramiko: the node's loopback, from the node
    ("login", RUNTIME, modes.Endpoint("10.0.1.5", 41234)),  # on the node's address, from the login node
])
def test_where_the_far_end_forwards_to(via, runtime, endpoint):
    assert modes.mode(via).endpoint(runtime, "10.0.1.9", lambda name: None) == endpoint


@pytest.mark.parametrize("sock", ["/tmp/a b/s", "/tmp/../etc/s", "relative/s", "/tmp/x:1", "/tmp/s\n",
                                  "/tmp/$(id)/s", "/" + "a" * 100, 5])
def test_a_socket_that_is_not_a_plain_short_path_is_refused(sock):
    with pytest.raises(LabError, match="not a plain path"):
        modes.mode("compute").endpoint({"port": 0, "sock": sock}, "n", lambda name: None)


def test_login_mode_falls_back_to_slurms_node_address():
    assert modes.mode("login").endpoint({"port": 1}, "10.0.1.9", lambda name: None) == modes.Endpoint("10.0.1.9", 1)


def test_the_reverse_hop_comes_from_the_jobs_own_log():
    up = "fabfile-lab: reverse socket /tmp/flr-00112233/s up\n"
    log = {"reverse.log": up}
    assert modes.mode("reverse").endpoint(RUNTIME, "", log.get) == modes.Endpoint(socket="/tmp/flr-00112233/s")
    assert modes.mode("reverse").endpoint(RUNTIME, "", lambda name: None) is None  # not up yet
    # down, then made again: where the newest hop is
    assert modes.reverse_endpoint(up + "fabfile-lab: reverse ssh exited\n") is None
    again = up + "fabfile-lab: reverse ssh exited\n" + up.replace("00112233", "00112233")
    assert modes.reverse_endpoint(again) == modes.Endpoint(socket="/tmp/flr-00112233/s")
    assert modes.reverse_endpoint("fabfile-lab: reverse socket /tmp/$(id)/s up\n") is None  # not a path: no hop


def test_a_site_without_stream_local_forwarding_gets_a_loopback_port():
    text = ("Error: remote port forwarding failed for listen path /tmp/flr-00112233/s\n"
            "fabfile-lab: stream-local forwarding refused by login1: Jupyter is reached through a port on its "
            "loopback instead (token-only)\n"
            "Allocated port 40123 for remote forward to /tmp/fl-Ab12Cd34/jupyter.sock\n")
    assert modes.reverse_endpoint(text) == modes.Endpoint("127.0.0.1", 40123)


def test_a_reverse_hop_that_failed_names_the_other_modes():
    text = "Host key verification failed.\nfabfile-lab: reverse ssh exited\n"
    with pytest.raises(LabError, match=r"Host key verification failed.*one of: compute, login"):
        modes.reverse_endpoint(text)
    refused = ("Error: remote port forwarding failed for listen path /tmp/flr-00112233/s\n"
               "fabfile-lab: stream-local forwarding refused by login1: ... (token-only)\n"
               "Error: remote port forwarding failed for listen port 0\nfabfile-lab: reverse ssh exited\n")
    with pytest.raises(LabError, match=r"listen port 0"):  # no forwarding at all: neither way works
        modes.reverse_endpoint(refused)


@pytest.mark.parametrize("via,openssh,present,absent", [
    ("compute", True, "--ServerApp.sock=", "ssh -N"),
    ("compute", False, "LAB_HOST=127.0.0.1", "--ServerApp.sock="),
    ("login", True, "NodeAddr=", "--ServerApp.sock="),
    ("reverse", True, "LAB_REVERSE_SOCKET=1\n", "NodeAddr="),
    ("reverse", False, "LAB_REVERSE_SOCKET=\n", "--ServerApp.sock="),
])
def test_each_mode_puts_its_own_lines_in_the_batch_script(via, openssh, present, absent):
    script = batch_script.render(LabSettings.from_config({"login": "l", "via": via}), "/h/.fabfile-lab/a-00112233",
                                 openssh)
    assert present in script and absent not in script
    assert "LAB_VIA=" in script and 'if [ "$LAB_VIA"' not in script  # no mode is decided in shell


def test_a_reverse_hop_refused_both_ways_is_a_forwarding_refusal_that_leaves_no_mode():
    from fabfile_lib.errors import ForwardingRefused

    log = ("mux_client_forward: forwarding request failed: remote port forwarding failed for listen path /tmp/flr-a/s\n"
           "muxclient: master forward request failed\n"
           "fabfile-lab: stream-local forwarding refused by login1: Jupyter is reached through a port (token-only)\n"
           "mux_client_forward: forwarding request failed: remote port forwarding failed for listen port 0\n"
           "muxclient: master forward request failed\n"
           "fabfile-lab: reverse ssh exited\n")
    with pytest.raises(ForwardingRefused) as err:
        modes.reverse_endpoint(log)
    assert err.value.refused == {modes.TCP, modes.STREAMLOCAL} and "no mode can reach Jupyter" in str(err.value)
    assert "listen port 0" in str(err.value)
    only_tcp = log.split("fabfile-lab: stream-local")[0].replace("listen path /tmp/flr-a/s", "listen port 0")
    with pytest.raises(ForwardingRefused) as err:
        modes.reverse_endpoint(only_tcp + "fabfile-lab: reverse ssh exited\n")
    assert err.value.refused == {modes.TCP} and "set lab.via to" not in str(err.value)  # all need TCP but reverse


def test_sshd_refusals_are_recognised_in_what_ssh_says():
    from fabfile_lib import openssh

    for said in ("channel 3: open failed: administratively prohibited: open failed",
                 "Stdio forwarding request failed: Session open refused by peer"):
        found = openssh.refused(f"noise\n{said}\n")
        assert found is not None and found.said == said
    assert openssh.refused("channel 3: open failed: connect failed: open failed") is None  # a socket not there
