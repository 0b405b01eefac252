"""The cluster in miniature: topology, Slurm, teardown, and two sandboxes side by side."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import paramiko
import pytest
from fabric import Connection

from fabfile_lib import LabError, sandbox
from fabfile_lib.sandbox import SandboxConfig, daemons
from fabfile_lib.sandbox import network as sbnet

from .conftest import TEST_SANDBOX, require_sandbox, ssh

pytestmark = pytest.mark.sandbox


def test_jump_answers_from_the_laptop(sbx):
    with socket.create_connection((sbx.address("jump"), 22), timeout=5) as sock:
        assert sock.recv(64).startswith(b"SSH-2.0-")


@pytest.mark.parametrize("host", ["login", "compute"])
def test_inner_hosts_fail_locally_from_the_laptop(sbx, host):
    started = time.monotonic()
    with pytest.raises(OSError):
        socket.create_connection((sbx.address(host), 22), timeout=5)
    # The blackhole route refuses at once; nothing waits for a packet that left the machine.
    assert time.monotonic() - started < 2


def test_ssh_config_chain_reaches_compute(sbx):
    proc = ssh(sbx, "compute", "hostname")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == sbx.hostname("compute")


def _connection(cfg: SandboxConfig, host: str, gateway: Connection | None) -> Connection:
    conn = Connection(cfg.address(host), user=cfg.username, gateway=gateway,
                      connect_kwargs={"key_filename": str(cfg.identity), "look_for_keys": False,
                                      "allow_agent": False})
    conn.client.load_host_keys(str(cfg.known_hosts))
    conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    return conn


def test_fabric_gateway_chain_reaches_compute(sbx):
    jump = _connection(sbx, "jump", None)
    login = _connection(sbx, "login", jump)
    compute = _connection(sbx, "compute", login)
    try:
        result = compute.run("hostname", hide=True, in_stream=False)
        assert result.stdout.strip() == sbx.hostname("compute")
    finally:
        for conn in (compute, login, jump):
            conn.close()


def test_sbatch_runs_on_compute_as_the_cluster_user(sbx):
    proc = ssh(sbx, "login", "cd ~ && sbatch --parsable --output=wrap-%j.out --wrap 'hostname; id -un'")
    assert proc.returncode == 0, proc.stderr
    job = proc.stdout.strip()
    out = sbx.home / f"wrap-{job}.out"  # the shared home, read from the laptop side of the machine
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (out.exists() and out.read_text().count("\n") >= 2):
        time.sleep(0.3)
    assert out.read_text().split() == [sbx.hostname("compute"), sbx.username]


def test_partitions_include_a_non_default_one(sbx):
    proc = ssh(sbx, "login", "sinfo -h -o '%P %a'")
    assert proc.returncode == 0, proc.stderr
    parts = proc.stdout.split()
    assert "debug*" in parts and "long" in parts


def test_reverse_hop_from_compute_to_login(sbx):
    proc = ssh(sbx, "compute", f"ssh {sbx.hostname('login')} hostname")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == sbx.hostname("login")


def _inv(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "invoke", *args], capture_output=True, text=True,
                          timeout=600, check=False, cwd=Path(__file__).parent.parent)


def test_status_json_from_the_command_line(sbx):
    proc = _inv("sandbox.status", "--json", "--name", sbx.name, "--subnet", sbx.subnet, "--dir", sbx.dir)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["up"] is True and data["user"] == sbx.username
    assert data["ssh_config"] == str(sbx.ssh_config) and Path(data["ssh_config"]).exists()
    assert {h: data["hosts"][h]["address"] for h in ("jump", "login", "compute")} == {
        h: sbx.address(h) for h in ("jump", "login", "compute")}


def test_private_files_are_private(sbx):
    assert sbx.identity.stat().st_mode & 0o777 == 0o600
    assert sbx.identity.parent.stat().st_mode & 0o777 == 0o700
    assert sbx.home.stat().st_mode & 0o777 == 0o700


def test_two_sandboxes_side_by_side_and_teardown(sbx):
    other = SandboxConfig(name="fltwo", subnet="10.251.1.0/24", dir="/var/tmp/fabfile-lab/fltwo")
    try:
        sandbox.up(other, echo=lambda _m: None)
        sandbox.up(other, echo=lambda _m: None)  # idempotent
        pids = [p for p in sandbox.status(other).daemons.values() if p]
        assert len(pids) == 6
        for cfg in (sbx, other):
            proc = ssh(cfg, "compute", "hostname")
            assert proc.stdout.strip() == cfg.hostname("compute"), proc.stderr
            nodes = ssh(cfg, "login", "sinfo -h -o %N").stdout.split()
            assert set(nodes) == {cfg.hostname("compute")}
    finally:
        sandbox.down(other, echo=lambda _m: None)
    sandbox.down(other, echo=lambda _m: None)  # twice is harmless
    assert not [ns for ns in sbnet.namespaces() if ns.startswith("fltwo-")]
    assert "fltwo-lap" not in subprocess.run(["ip", "link"], capture_output=True, text=True).stdout
    assert "10.251.1.0/24" not in subprocess.run(["ip", "route"], capture_output=True, text=True).stdout
    assert not Path(other.dir).exists()
    assert all(daemons.start_time(p) is None for p in pids)
    assert not sandbox.cluster.user_exists(other.username)
    # ... and the first sandbox is untouched.
    assert sandbox.status(sbx).up
    assert ssh(sbx, "compute", "hostname").stdout.strip() == sbx.hostname("compute")


def test_overlapping_range_is_refused(sbx):
    clash = SandboxConfig(name="flclash", subnet=TEST_SANDBOX.subnet, dir="/var/tmp/fabfile-lab/flclash")
    with pytest.raises(LabError, match="overlaps"):
        sandbox.up(clash, echo=lambda _m: None)
    assert not Path(clash.dir).exists()


def test_not_root_is_a_one_line_error(monkeypatch):
    require_sandbox()
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    proc_err = None
    try:
        sandbox.up(SandboxConfig(name="flnoroot", subnet="10.251.9.0/24", dir="/tmp/flnoroot"))
    except LabError as exc:
        proc_err = str(exc)
    assert proc_err and "root" in proc_err and "\n" not in proc_err


def test_down_of_another_name_never_removes_a_live_sandboxs_route(sbx):
    """`down` given a range it never brought up (a name with no recorded range, the other's subnet) must
    keep the blackhole route that the live sandbox's link still relies on."""
    ghost = SandboxConfig(name="ghost", subnet=sbx.subnet, dir="/var/tmp/fabfile-lab/ghost")
    sandbox.down(ghost, echo=lambda _msg: None)
    routes = subprocess.run(["ip", "route", "show", "type", "blackhole", sbx.subnet], capture_output=True,
                            text=True, check=True).stdout
    assert sbx.subnet in routes
    assert ssh(sbx, "compute", "hostname").returncode == 0


def _inv_sandbox(tmp_path, task: str, **sandbox_keys) -> subprocess.CompletedProcess:
    import yaml

    config = tmp_path / "sbx.yaml"
    config.write_text(yaml.safe_dump({"sandbox": sandbox_keys}))
    return subprocess.run([sys.executable, "-m", "invoke", "-f", str(config), task], capture_output=True, text=True,
                          timeout=120, check=False, stdin=subprocess.DEVNULL,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("task,keys,words", [
    ("sandbox.down", {"name": "flroot", "subnet": "10.251.7.0/24", "dir": "/"}, "was not made by"),
    ("sandbox.up", {"name": "flvenv", "subnet": "10.251.7.0/24", "venv": "/usr"}, "is not a sandbox's JupyterLab"),
    ("sandbox.up", {"name": "fluser", "subnet": "10.251.7.0/24", "user": "nobody"}, "existing account"),
    ("sandbox.up", {"name": "fldir", "subnet": "10.251.7.0/24", "dir": "/usr/share"}, "is not a sandbox's"),
])
def test_the_sandbox_never_touches_what_it_did_not_make(sbx, tmp_path, task, keys, words):
    from .conftest import one_line_error

    before = {p: os.stat(p).st_mode for p in ("/", "/usr", "/usr/share")}
    passwd = Path("/etc/passwd").read_text()
    err = one_line_error(_inv_sandbox(tmp_path, task, **keys))
    assert words in err and "nothing" in err, err
    assert {p: os.stat(p).st_mode for p in before} == before and Path("/usr/bin/python3").exists()
    assert Path("/etc/passwd").read_text() == passwd
    assert keys["name"] + "-jump" not in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                                        text=True).stdout
