"""Every check of what the cluster says: trailing newlines, ``..``, ``%``, quotes, non-strings."""

from __future__ import annotations

import pytest

from fabfile_lib import untrusted

NOT_STRINGS = [None, 7, 7.0, True, ["n1"], {"n": 1}, b"n1"]


@pytest.mark.parametrize("good", ["1", "4242", "17_3"])
def test_job_ids_are_digits_or_array_tasks(good):
    assert untrusted.job_id(good)


@pytest.mark.parametrize("bad", ["", "42\n", "42 ", "-42", "42;id", "4_2_3", "$(id)", "4%2", *NOT_STRINGS])
def test_anything_else_is_not_a_job_id(bad):
    assert not untrusted.job_id(bad)


@pytest.mark.parametrize("good", ["n1", "node-01.cluster.example", "10.0.1.5", "fe80::1", "a" * 63])
def test_host_names_and_addresses(good):
    assert untrusted.host(good)


@pytest.mark.parametrize("bad", ["", "n1\n", "-oProxyCommand=id", "n1'$(id)'", "n 1", "n1;id", "n%h", "n1/..",
                                 "..", "a" * 64, "n1..x", "[::1]", *NOT_STRINGS])
def test_anything_else_is_not_a_host(bad):
    assert not untrusted.host(bad)


def test_host_names_from_hostname_output_keep_only_hosts_in_order():
    assert untrusted.host_names("login1\nlogin1.example.org\n") == ("login1", "login1.example.org")
    assert untrusted.host_names("login1\n$(id)\nlogin1\n") == ("login1",)


@pytest.mark.parametrize("good", ["lab", "my_lab.2", "A-1"])
def test_lab_names(good):
    assert untrusted.lab_name(good)


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "lab\n", "-lab", "a b", "x" * 41, *NOT_STRINGS])
def test_anything_else_is_not_a_lab_name(bad):
    assert not untrusted.lab_name(bad)


@pytest.mark.parametrize("value,ok", [(1, True), (65535, True), (0, False), (65536, False), (True, False),
                                      ("8888", False), (8888.0, False), (None, False)])
def test_ports_are_integers_in_range(value, ok):
    assert untrusted.port(value) is ok


@pytest.mark.parametrize("good", ["/tmp/fl-Ab12Cd34/jupyter.sock", "/tmp/flr-00112233/s", "/a"])
def test_socket_paths(good):
    assert untrusted.socket_path(good)


@pytest.mark.parametrize("bad", ["", "tmp/s", "/tmp/s\n", "/tmp/../etc/s", "/tmp/./s", "/tmp//s", "/tmp/a b",
                                 "/tmp/x:1", "/tmp/%h", "/tmp/'s'", "/tmp/$(id)", "/" + "a" * 100, *NOT_STRINGS])
def test_anything_else_is_not_a_socket_path(bad):
    assert not untrusted.socket_path(bad)


@pytest.mark.parametrize("text,ok", [("/home/u", True), ("/gpfs/home/a b", True), ("/", True), ("home/u", False),
                                     ("/home/../etc", False), ("/home/./u", False), ("/home/u\n", False),
                                     ("/home/\x1b[2Ju", False), ("", False), (None, False), ("/" + "a" * 2000, False)])
def test_a_home_directory_is_an_absolute_plain_path(text, ok):
    assert untrusted.home(text) is ok


def test_the_login_facts_are_the_home_then_the_names():
    facts = untrusted.login_facts("login1\nlogin1.example.org\n/home/u\n")
    assert facts == ("/home/u", ("login1", "login1.example.org"))
    assert untrusted.login_facts("login1\n$(id)\n") == ("", ("login1",))
    assert untrusted.login_facts("/etc\nlogin1\n/home/u\n")[0] == "/home/u"  # a login shell's noise comes first
    # What a login shell's rc file prints comes first, whatever it looks like: only the last three lines count.
    chatty = "Welcome to the cluster\nquota ok\n\nlogin1\nlogin1.example.org\n/home/u\n"
    assert untrusted.login_facts(chatty) == ("/home/u", ("login1", "login1.example.org"))
    assert untrusted.login_facts("\nlogin1\nlogin1\n/home/u\n") == ("/home/u", ("login1",))  # no hostname -f
