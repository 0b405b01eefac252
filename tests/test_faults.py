"""Faults injected under a running lab, against the sandbox: the job ending behind the tool's back, the
scheduler going away, hops reset or down. Each is bounded in time and touches only the sandbox. (The
walltime running out, and a reset of the jump host's sessions in each mode, are seen in test_as_a_user.py,
from the page as well as from the forward.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
import requests

from fabfile_lib.sandbox import cluster, daemons

from .conftest import forward_ended, ssh, wait_for

pytestmark = pytest.mark.sandbox


def _start(cli, name: str) -> dict:
    proc = cli("lab.start", "--name", name, "--no-browser", "--detach")
    assert proc.returncode == 0, proc.stderr
    return cli.record(name)


def test_a_job_cancelled_behind_the_tools_back_stops_the_forward_and_status_says_why(lab_cli, sbx):
    cli = lab_cli()
    rec = _start(cli, "behind")
    assert ssh(sbx, "login", f"scancel {rec['job_id']}").returncode == 0
    wait_for(lambda: forward_ended(cli, "behind"), timeout=15)
    log = (cli.state_dir / "labs" / "behind.forward.log").read_text()
    assert "has ended: it was cancelled" in log, log
    out = cli("lab.status", "--name", "behind").stdout
    assert "has ended: it was cancelled" in out and "inv lab.cancel --name behind" in out, out
    assert json.loads(cli("lab.status", "--name", "behind", "--json").stdout)["ended_because"]


def test_status_with_the_scheduler_down_says_so_and_keeps_the_lab(lab_cli, sbx):
    cli = lab_cli(connect_timeout=10)
    _start(cli, "noctld")
    daemons.stop(sbx.run_dir / "slurmctld.pid")
    try:
        started = time.monotonic()
        proc = cli("lab.status", "--name", "noctld")
        assert time.monotonic() - started <= 10 + 10 + 3  # connect_timeout + 10, and inv's own start-up
        assert proc.returncode != 0 and "Traceback" not in proc.stderr
        assert "scheduler" in proc.stderr and "kept" in proc.stderr, proc.stderr
        assert (cli.state_dir / "labs" / "noctld.json").exists()
    finally:
        cluster.start_slurm(sbx)
        wait_for(lambda: ssh(sbx, "login", "squeue -h").returncode == 0, timeout=60)
    assert json.loads(cli("lab.status", "--name", "noctld", "--json").stdout)["state"] == "RUNNING"


def _answers(rec: dict, port: int | None = None) -> bool:
    try:
        url = f"http://127.0.0.1:{port or rec['forward_port']}/api/status"
        return requests.get(url, headers={"Authorization": f"token {rec['token']}"}, timeout=5).status_code == 200
    except requests.ConnectionError:
        return False


def test_a_killed_background_forward_is_restored_by_tunnel_detach(lab_cli, sbx):
    cli = lab_cli()
    rec = _start(cli, "k9")
    os.kill(rec["forward_pid"], signal.SIGKILL)
    wait_for(lambda: not _answers(rec), timeout=10)  # its ssh went with it: the port is free again
    proc = cli("lab.tunnel", "--name", "k9", "--detach", "--no-browser")
    assert proc.returncode == 0, proc.stderr
    assert _answers(cli.record("k9"))


def test_a_link_down_for_20_seconds_heals(lab_cli, sbx):
    cli = lab_cli()
    rec = _start(cli, "link")
    subprocess.run(["ip", "link", "set", sbx.root_ifname, "down"], check=True)
    try:
        time.sleep(20)
    finally:
        subprocess.run(["ip", "link", "set", sbx.root_ifname, "up"], check=True)
    wait_for(lambda: _answers(rec), timeout=60)


@pytest.mark.parametrize("transport", ["auto", "paramiko"])
def test_a_dead_hop_is_noticed_within_three_keepalives(lab_cli, sbx, transport):
    cli = lab_cli(transport=transport, keepalive=2)
    rec = _start(cli, f"dead{transport}")
    log = cli.state_dir / "labs" / f"dead{transport}.forward.log"
    subprocess.run(["ip", "link", "set", sbx.root_ifname, "down"], check=True)
    try:
        took = wait_for(lambda: "dropped" in log.read_text(), timeout=2 * 3 + 5)
    finally:
        subprocess.run(["ip", "link", "set", sbx.root_ifname, "up"], check=True)
    assert took <= 2 * 3 + 4  # keepalive x 3, and the once-a-second look
    wait_for(lambda: _answers(rec), timeout=60)
