"""Two login nodes behind one name, as large sites run them: the cluster's name gives each in turn (a
resolver standing in for DNS round robin), both share one host key, and each node's own name reaches it.
A lab in any mode keeps answering through every later login and from any machine; when the login node a
reverse-mode lab lives on cannot be reached, that is one line, and the job is kept."""

from __future__ import annotations

import subprocess
import time

import pytest

from fabfile_lib import master
from fabfile_lib.sandbox import SandboxConfig, cluster, daemons
from fabfile_lib.settings import LabSettings

from .conftest import LabCli, answers, one_line_error, sandbox_up, ssh, start_side_by_side, wait_for

pytestmark = pytest.mark.sandbox
TWO = SandboxConfig(name="fltwo", subnet="10.252.0.0/24", dir="/var/tmp/fabfile-lab/fltwo", login_nodes=2)
MODES = ("compute", "login", "reverse")


@pytest.fixture(scope="module")
def two():
    with sandbox_up(TWO) as cfg:
        yield cfg


@pytest.fixture
def cli_two(two, tmp_path):
    made: list[LabCli] = []

    def make(**lab) -> LabCli:
        made.append(LabCli(two, tmp_path, **lab))
        return made[-1]

    yield make
    for cli in made:
        cli.cleanup()
    ssh(two, "login", f"scancel -u {two.username}")


def _landed(cli) -> tuple[str, ...]:
    return master.plan(LabSettings.from_config(cli.lab)).landed()


def test_the_cluster_name_gives_each_login_node_in_turn(two):
    seen = {ssh(two, "login", "hostname").stdout.strip() for _ in range(4)}
    assert seen == {two.hostname("login"), two.hostname("login2")}
    assert ssh(two, two.hostname("login2"), "hostname").stdout.strip() == two.hostname("login2")


def test_every_mode_answers_through_later_logins_on_the_other_node_and_from_another_machine(cli_two, two,
                                                                                            tmp_path):
    cli = cli_two()
    names = {f"two{via}": via for via in MODES}
    records = start_side_by_side(cli, names)
    submitted_on = records["tworeverse"]["login_host"]
    assert submitted_on in (two.hostname("login"), two.hostname("login2"))

    # Log out and in until the cluster's name lands on the other login node: every URL answers again.
    for _ in range(4):
        assert cli("lab.logout").returncode == 0
        assert cli("lab.login").returncode == 0
        if submitted_on not in _landed(cli):
            break
    assert submitted_on not in _landed(cli)
    began = time.monotonic()
    for rec in records.values():
        wait_for(lambda rec=rec: answers(rec["forward_port"]), timeout=30)
    assert time.monotonic() - began <= 30
    assert cli("lab.status").stdout.count("(answers)") == 3

    # Another laptop attaches to each, landing on whichever node the name gives it.
    for attempt, name in enumerate(names):
        other = cli_two(state_dir=str(tmp_path / f"laptop{attempt}"))
        proc = other("lab.attach", "--name", name, "--detach", "--no-browser")
        assert proc.returncode == 0, proc.stderr
        assert answers(other.record(name)["forward_port"])
        assert other("lab.tunnel", "--name", name, "--stop").returncode == 0


def test_a_pinned_login_node_that_cannot_be_reached_is_one_line_and_the_job_is_kept(cli_two, two):
    cli = cli_two(connect_timeout=5)
    proc = cli("lab.start", "--name", "pinned", "--via", "reverse", "--no-browser", "--detach")
    assert proc.returncode == 0, proc.stderr
    rec = cli.record("pinned")
    node = next(h for h in two.login_hosts if two.hostname(h) == rec["login_host"])
    assert cli("lab.tunnel", "--name", "pinned", "--stop").returncode == 0
    assert cli("lab.logout").returncode == 0
    daemons.stop(two.run_dir / f"sshd-{node}.pid")
    try:
        err = one_line_error(cli("lab.tunnel", "--name", "pinned", "--no-browser", timeout=120))
        assert f"login node {rec['login_host']} cannot be reached by its own name" in err, err
        assert "job is kept" in err and "--via compute" in err, err
        other = "login2" if node == "login" else "login"
        jobs = subprocess.run(["ssh", "-F", str(two.ssh_config), two.hostname(other), "squeue -h -o %i"],
                              capture_output=True, text=True, timeout=30).stdout.split()
        assert rec["job_id"] in jobs
    finally:
        cluster.start_sshd(two, node)
    wait_for(lambda: cli("lab.tunnel", "--name", "pinned", "--detach", "--no-browser").returncode == 0,
             timeout=60, step=3)
    assert answers(cli.record("pinned")["forward_port"])
