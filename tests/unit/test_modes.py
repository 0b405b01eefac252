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


@pytest.mark.parametrize("via,endpoint", [
    ("compute", ("127.0.0.1", 41234)),  # Jupyter on the node's loopback, reached from the node
    ("login", ("10.0.1.5", 41234)),  # on the node's address, reached from the login node
])
def test_where_the_far_end_forwards_to(via, endpoint):
    assert modes.mode(via).endpoint(RUNTIME, "10.0.1.9", lambda name: None) == endpoint


def test_login_mode_falls_back_to_slurms_node_address():
    assert modes.mode("login").endpoint({"port": 1}, "10.0.1.9", lambda name: None) == ("10.0.1.9", 1)


def test_the_reverse_hop_port_comes_from_ssh_itself():
    log = {"reverse.log": "Allocated port 40123 for remote forward to 127.0.0.1:41234\n"}
    assert modes.mode("reverse").endpoint(RUNTIME, "", log.get) == ("127.0.0.1", 40123)
    assert modes.mode("reverse").endpoint(RUNTIME, "", lambda name: None) is None  # not up yet
    assert modes.reverse_port("") == 0


def test_a_reverse_hop_that_failed_names_the_other_modes():
    text = "Host key verification failed.\nfabfile-lab: reverse ssh exited with status 255\n"
    with pytest.raises(LabError, match=r"Host key verification failed.*one of: compute, login"):
        modes.reverse_port(text)


@pytest.mark.parametrize("via,present,absent", [
    ("compute", "BIND=127.0.0.1", "ssh -N"),
    ("login", "NodeAddr=", "ssh -N"),
    ("reverse", '-R "127.0.0.1:0:127.0.0.1:$PORT"', "NodeAddr="),
])
def test_each_mode_puts_its_own_lines_in_the_batch_script(via, present, absent):
    script = batch_script.render(LabSettings.from_config({"login": "l", "via": via}), "/h/.fabfile-lab/a-00112233")
    assert present in script and absent not in script
    assert "LAB_VIA=" in script and 'if [ "$LAB_VIA"' not in script  # no mode is decided in shell
