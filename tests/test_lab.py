"""The lab tasks end to end against the sandbox: three modes, config shapes, secrets, bad input."""

from __future__ import annotations

import json
import re
import shlex
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

from .conftest import assert_nothing_left, one_line_error, ssh, throwaway_user
from .kernel import Kernel

pytestmark = pytest.mark.sandbox




def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _url(proc: subprocess.CompletedProcess) -> str:
    match = re.search(r"JupyterLab: (http://127\.0\.0\.1:\d+/lab\?token=\S+)", proc.stdout)
    assert match, proc.stdout + proc.stderr
    return match.group(1)


def _answers_within(url: str, seconds: float) -> int:
    """The HTTP status of ``url`` once it is 200, or the last one seen when ``seconds`` have passed."""
    deadline = time.monotonic() + seconds
    code = 0
    while time.monotonic() < deadline and code != 200:
        try:
            code = requests.get(url, timeout=5).status_code
        except requests.ConnectionError:
            code = 0
        if code != 200:
            time.sleep(0.5)
    return code


def _jump_logins(sbx) -> int:
    """How many logins the jump host has accepted so far (its sshd log)."""
    return (sbx.log_dir / "sshd-jump.log").read_text().count("Accepted ")


def _listeners_of(port: int) -> set[str]:
    """The names of the local processes listening on ``port`` (127.0.0.1 and ::1)."""
    out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    return set(re.findall(r'\(\("([^"]+)"', out))


def _listening(sbx, host: str, port: int) -> list[str]:
    out = subprocess.run(["nsenter", f"--net=/run/netns/{sbx.netns(host)}", "ss", "-Hltn"],
                         capture_output=True, text=True, check=True).stdout
    return [line.split()[3] for line in out.splitlines() if line.split()[3].endswith(f":{port}")]


def _runtime(rec: dict) -> dict:
    return json.loads(next((Path(rec["remote_dir"]) / "runtime").glob("jpserver-*.json")).read_text())


def _jupyter_pid(rec: dict) -> int:
    return int(_runtime(rec)["pid"])


def _ports_of(sbx, host: str, pid: int) -> list[str]:
    """The TCP ports process ``pid`` listens on in ``host``'s namespace."""
    out = subprocess.run(["nsenter", f"--net=/run/netns/{sbx.netns(host)}", "ss", "-Hltnp"],
                         capture_output=True, text=True, check=True).stdout
    return [line.split()[3] for line in out.splitlines() if f"pid={pid}," in line]


def _forwarded_ports(sbx, host: str) -> list[str]:
    """Ports sshd listens on in ``host``'s namespace besides its own (22, and 2222, 2223 on login nodes): the
    far ends of reverse forwards."""
    out = subprocess.run(["nsenter", f"--net=/run/netns/{sbx.netns(host)}", "ss", "-Hltnp"],
                         capture_output=True, text=True, check=True).stdout
    return [line.split()[3] for line in out.splitlines()
            if '"sshd"' in line and line.split()[3].rsplit(":", 1)[1] not in ("22", "2222", "2223")]


def _assert_private_socket(sbx, path: str) -> None:
    info, parent = Path(path).lstat(), Path(path).parent.lstat()
    assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600, path
    assert stat.S_IMODE(parent.st_mode) == 0o700 and parent.st_uid == info.st_uid == sbx.home.stat().st_uid, path
    assert len(path) < 100 and not path.startswith(str(sbx.home)), path  # short, and not on the shared home


def _other_user_connects(sbx, path: str) -> str:
    """What another cluster user gets connecting to the Unix socket ``path`` from the compute node."""
    with throwaway_user() as account:
        code = (f"import socket\ntry:\n    socket.socket(socket.AF_UNIX).connect({path!r})\n    print('connected')\n"
                "except OSError as e:\n    print(type(e).__name__)")
        return subprocess.run(["nsenter", f"--net=/run/netns/{sbx.netns('compute')}", "su", account, "-s", "/bin/sh",
                               "-c", f"python3 -c {shlex.quote(code)}"],
                              capture_output=True, text=True, timeout=30).stdout.strip()


@pytest.mark.parametrize("via,transport", [("compute", "auto"), ("login", "auto"), ("reverse", "auto"),
                                           ("compute", "paramiko"), ("login", "paramiko")])
def test_lab_lifecycle_in_each_mode(lab_cli, sbx, via, transport):
    cli = lab_cli(via=via, transport=transport)
    logins_before = _jump_logins(sbx)
    proc = cli("lab.start", "--name", f"m{via}", "--no-browser", "--detach")
    assert proc.returncode == 0, proc.stderr
    url = _url(proc)
    status = json.loads(cli("lab.status", "--json", "--name", f"m{via}").stdout)
    assert status["via"] == via and status["state"] == "RUNNING" and status["url"] == url
    assert status["node"] == sbx.hostname("compute") and status["job_id"]
    port = status["local_port"]
    base = f"http://127.0.0.1:{port}"
    token = url.split("token=")[1]

    auth = {"Authorization": f"token {token}"}
    assert requests.get(f"{base}/api/status", headers=auth, timeout=10).status_code == 200
    assert requests.get(f"{base}/api/status", timeout=10).status_code == 403
    assert requests.get(f"http://[::1]:{port}/api/status", timeout=10).status_code == 403  # IPv6 loopback too
    kernel = Kernel(base, token)
    assert kernel.run("print(6 * 7)").strip() == "42"
    kernel.close()

    rec = cli.record(f"m{via}")
    forwarder = _listeners_of(port)
    assert forwarder == ({"ssh"} if transport == "auto" else {"python3"}), forwarder  # who carries the bytes
    if via != "login" and transport == "auto":
        # OpenSSH carries the forward: Jupyter has no TCP port on the node (nor, in reverse mode, on the
        # login node), only a 0600 socket in a 0700 directory that another cluster user cannot connect to.
        assert status["listens"] == "JupyterLab on a private socket" and rec["app_port"] == 0
        assert not _ports_of(sbx, "compute", _jupyter_pid(rec)) and status["remote_socket"] == rec["remote_socket"]
        if via == "reverse":  # the hop's far end on the login node: no port of sshd's beyond its own
            assert _forwarded_ports(sbx, "login") == []
        for path in {_runtime(rec)["sock"], rec["remote_socket"]}:  # the node's, and the login node's
            _assert_private_socket(sbx, path)
            assert _other_user_connects(sbx, path) == "PermissionError"
    else:
        # A TCP port: on 127.0.0.1 on the node (Paramiko cannot forward to a socket), or on the node's
        # address in login mode, where the login node must reach it. Either way, token-only.
        assert "(token-only" in status["listens"]
        bound = _listening(sbx, "compute", rec["app_port"])
        assert bound == ([f"{sbx.address('compute')}:{rec['app_port']}"] if via == "login"
                         else [f"127.0.0.1:{rec['app_port']}"])

    assert cli("lab.tunnel", "--name", f"m{via}", "--stop").returncode == 0
    assert not _port_open(port)
    proc = cli("lab.tunnel", "--name", f"m{via}", "--detach", "--no-browser")
    assert proc.returncode == 0, proc.stderr
    assert requests.get(_url(proc).replace("/lab?token=", "/api/status?token="), timeout=10).status_code == 200
    if transport == "auto":  # start, status, two forwards: all rode one login through the jump host
        assert _jump_logins(sbx) - logins_before == 1

    remote_dir = Path(rec["remote_dir"])
    assert remote_dir.is_dir()
    assert cli("lab.cancel", "--name", f"m{via}").returncode == 0
    assert_nothing_left(sbx)
    assert not remote_dir.exists()
    assert not (cli.state_dir / "labs" / f"m{via}.json").exists()
    assert not list((cli.state_dir / "labs").iterdir())  # no forward log left either
    assert not _port_open(int(_url(proc).split(":")[2].split("/")[0]))


def test_secrets_stay_out_of_argv_scripts_and_logs(lab_cli, sbx):
    cli = lab_cli()
    proc = cli("lab.start", "--name", "sec", "--no-browser", "--detach")
    assert proc.returncode == 0, proc.stderr
    rec = cli.record("sec")
    token = rec["token"]
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            assert token.encode() not in cmdline.read_bytes(), cmdline
        except OSError:
            continue
    script = ssh(sbx, "login", f"scontrol write batch_script {rec['job_id']} -")
    assert script.returncode == 0 and "#SBATCH" in script.stdout and token not in script.stdout
    log = Path(rec["remote_dir"]) / "job.log"
    assert token not in log.read_text()
    assert log.stat().st_mode & 0o777 == 0o600
    assert Path(rec["remote_dir"]).stat().st_mode & 0o777 == 0o700
    assert (Path(rec["remote_dir"]) / "token").stat().st_mode & 0o777 == 0o600
    record_file = cli.state_dir / "labs" / "sec.json"
    assert record_file.stat().st_mode & 0o777 == 0o600
    assert record_file.parent.stat().st_mode & 0o777 == 0o700


def test_two_labs_at_once_by_name(lab_cli, sbx):
    cli = lab_cli()
    for name in ("one", "two"):
        proc = cli("lab.start", "--name", name, "--no-browser", "--detach")
        assert proc.returncode == 0, proc.stderr
    labs = json.loads(cli("lab.status", "--json").stdout)
    assert sorted(lab["name"] for lab in labs) == ["one", "two"]
    assert len({lab["job_id"] for lab in labs}) == 2 and len({lab["local_port"] for lab in labs}) == 2
    for lab in labs:
        assert requests.get(lab["url"].replace("/lab?", "/api/status?"), timeout=10).status_code == 200
    assert cli("lab.cancel", "--name", "one").returncode == 0
    assert [lab["name"] for lab in json.loads(cli("lab.status", "--json").stdout)] == ["two"]


def _blog_ssh_config(sbx, tmp_path: Path) -> Path:
    """The blog's shape: a login alias whose ProxyCommand is `ssh <jump alias> -W %h:%p`."""
    path = tmp_path / "blog_ssh_config"
    common = (f"    User {sbx.username}\n    IdentityFile {sbx.identity}\n"
              f"    UserKnownHostsFile {sbx.known_hosts}\n    StrictHostKeyChecking yes\n")
    path.write_text(
        f"Host work-via-jump\n    Hostname {sbx.address('login')}\n{common}"
        f"    ProxyCommand ssh -F {path} jump-server -W %h:%p\n    ServeraliveInterval 60\n\n"
        f"Host jump-server\n    Hostname {sbx.address('jump')}\n{common}    ServeraliveInterval 60\n")
    return path


@pytest.mark.parametrize("shape", ["blog-proxycommand", "explicit-jump"])
def test_ssh_config_shapes(lab_cli, sbx, tmp_path, shape):
    if shape == "blog-proxycommand":
        cli = lab_cli(ssh_config=str(_blog_ssh_config(sbx, tmp_path)), login="work-via-jump")
    else:  # the login host given as user@address, the jump host named separately
        cli = lab_cli(login=f"{sbx.username}@{sbx.address('login')}", jump="jump")
    proc = cli("lab.start", "--name", "shape", "--no-browser", "--detach")
    assert proc.returncode == 0, proc.stderr
    assert requests.get(_url(proc).replace("/lab?", "/api/status?"), timeout=10).status_code == 200


def _tampered_config(sbx, tmp_path: Path, known_hosts: str) -> Path:
    kh = tmp_path / "known_hosts"
    kh.write_text(known_hosts)
    cfg = tmp_path / "ssh_config"
    cfg.write_text(sbx.ssh_config.read_text().replace(str(sbx.known_hosts), str(kh)))
    return cfg


def test_a_host_key_that_does_not_match_is_refused(lab_cli, sbx, tmp_path):
    lines = sbx.known_hosts.read_text().splitlines()
    jump_key = lines[0].split(None, 1)[1]
    forged = [lines[0], f"{sbx.address('login')} {jump_key}", lines[2]]  # login "presents" another key
    cli = lab_cli(ssh_config=str(_tampered_config(sbx, tmp_path, "\n".join(forged) + "\n")))
    err = one_line_error(cli("lab.start", "--name", "mitm", "--no-browser", "--detach"))
    assert "does not match" in err and sbx.address("login") in err
    assert_nothing_left(sbx, cli, "mitm")


def test_an_unknown_host_is_refused_unless_accept_new(lab_cli, sbx, tmp_path):
    lines = sbx.known_hosts.read_text().splitlines()
    cfg = _tampered_config(sbx, tmp_path, lines[0] + "\n")  # jump known; login and compute not
    err = one_line_error(lab_cli(ssh_config=str(cfg))("lab.start", "--name", "new", "--no-browser"))
    assert "not in the known hosts" in err and "accept_new_host_keys" in err
    proc = lab_cli(ssh_config=str(cfg), accept_new_host_keys=True)("lab.start", "--name", "new", "--no-browser",
                                                                   "--detach")
    assert proc.returncode == 0, proc.stderr
    assert sbx.address("login") in (tmp_path / "known_hosts").read_text()


def test_unknown_partition_is_one_line_and_leaves_nothing(lab_cli, sbx):
    cli = lab_cli(sbatch={"partition": "nope"})
    err = one_line_error(cli("lab.start", "--name", "bad", "--no-browser"))
    assert "partition" in err
    assert_nothing_left(sbx, cli, "bad")


def test_a_failing_command_is_reported_with_the_log_tail_quickly(lab_cli, sbx):
    # (A missing `jupyter` has its own message: tests/test_day.py.)
    cli = lab_cli(command="""python3 -c 'import sys; print("boom: no kernel for you"); sys.exit(3)'""")
    started = time.monotonic()
    err = one_line_error(cli("lab.start", "--name", "nojup", "--no-browser"))
    assert time.monotonic() - started < 30
    assert "log tail:" in err and "boom: no kernel for you" in err and "jupyterlab exited with status 3" in err
    assert_nothing_left(sbx, cli, "nojup")


def test_a_busy_local_port_fails_before_submission(lab_cli, sbx):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        cli = lab_cli(local_port=port)
        err = one_line_error(cli("lab.start", "--name", "busy", "--no-browser", "--detach"))
    assert f"local port {port} is already in use" in err
    assert_nothing_left(sbx, cli, "busy")


def _start_foreground(cli, *args: str) -> subprocess.Popen:
    return subprocess.Popen(["python3", "-m", "invoke", "-f", str(cli.path), "lab.start", "--no-browser", *args],
                            cwd=Path(__file__).parent.parent, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _read_until(proc: subprocess.Popen, pattern: str, timeout: float = 60) -> str:
    seen = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        seen += line
        if re.search(pattern, line):
            return seen
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"never saw {pattern!r}: {seen} {proc.stderr.read()}")


def test_ctrl_c_while_pending_cancels_the_job(lab_cli, sbx):
    cli = lab_cli(sbatch={"partition": "debug", "begin": "now+3600"})
    proc = _start_foreground(cli, "--name", "pend")
    _read_until(proc, r"pending \(BeginTime\)")
    proc.send_signal(subprocess.signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "cancelled" in err and "Traceback" not in err
    assert_nothing_left(sbx, cli, "pend")


def test_ctrl_c_once_running_keeps_the_job_and_says_how_to_reattach(lab_cli, sbx):
    cli = lab_cli()
    proc = _start_foreground(cli, "--name", "fg")
    seen = _read_until(proc, r"JupyterLab: http")
    port = int(re.search(r"127\.0\.0\.1:(\d+)/", seen).group(1))
    assert _port_open(port)
    proc.send_signal(subprocess.signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert "inv lab.tunnel --name fg" in out and "inv lab.cancel --name fg" in out, out + err
    assert "Traceback" not in err
    assert not _port_open(port)
    assert json.loads(cli("lab.status", "--json", "--name", "fg").stdout)["state"] == "RUNNING"


def test_a_mode_that_cannot_work_names_the_others(lab_cli, sbx):
    cli = lab_cli(via="reverse", reverse_target="no-such-login-host")
    started = time.monotonic()
    err = one_line_error(cli("lab.start", "--name", "norev", "--no-browser"))
    assert time.monotonic() - started < 30
    assert "reverse ssh" in err and "one of: compute, login" in err
    assert_nothing_left(sbx, cli, "norev")


def test_compute_mode_unreachable_node_names_the_other_modes(lab_cli, sbx, tmp_path):
    lines = sbx.known_hosts.read_text().splitlines()
    cfg = _tampered_config(sbx, tmp_path, "\n".join(lines[:2]) + "\n")  # compute's key unknown
    err = one_line_error(lab_cli(ssh_config=str(cfg))("lab.start", "--name", "nocomp", "--no-browser"))
    assert "not in the known hosts" in err and "login, reverse" in err
    assert_nothing_left(sbx)


def test_the_background_forward_reconnects_after_a_drop(lab_cli, sbx):
    cli = lab_cli()
    proc = cli("lab.start", "--name", "drop", "--no-browser", "--detach")
    assert proc.returncode == 0, proc.stderr
    status_url = _url(proc).replace("/lab?", "/api/status?")
    # Drop every connection through the jump host: end the sandbox sshd's per-connection children.
    sshd = int((sbx.run_dir / "sshd-jump.pid").read_text().split()[0])
    children = subprocess.run(["ps", "-o", "pid=", "--ppid", str(sshd)], capture_output=True, text=True).stdout
    assert children.split()
    subprocess.run(["kill", *children.split()], check=True)
    assert _answers_within(status_url, 30) == 200  # same local port, same URL
    assert "reconnecting" in (cli.state_dir / "labs" / "drop.forward.log").read_text()


def test_a_changed_jump_host_key_through_the_blog_proxycommand_is_one_line(lab_cli, sbx, tmp_path):
    path = _blog_ssh_config(sbx, tmp_path)
    lines = sbx.known_hosts.read_text().splitlines()
    login_key = lines[1].split(None, 1)[1]
    forged = [f"{sbx.address('jump')} {login_key}", *lines[1:]]  # the jump host "presents" another key
    kh = tmp_path / "known_hosts"
    kh.write_text("\n".join(forged) + "\n")
    path.write_text(path.read_text().replace(str(sbx.known_hosts), str(kh)))
    cli = lab_cli(ssh_config=str(path), login="work-via-jump", connect_timeout=10)
    started = time.monotonic()
    err = one_line_error(cli("lab.start", "--name", "jumpkey", "--no-browser"))
    assert time.monotonic() - started < 10
    assert "host key" in err and "does not match" in err and sbx.address("jump") in err, err
    assert_nothing_left(sbx, cli, "jumpkey")


def _jump_hop_pid(cli, sbx, which: str) -> int:
    """The kept login's ssh (``master``, from its control socket) or its hop to the jump host (``proxy``,
    the `ssh -W` child OpenSSH started for ProxyJump)."""
    from fabfile_lib import master
    from fabfile_lib.procs import start_time
    from fabfile_lib.settings import LabSettings

    info = master.plan(LabSettings.from_config(cli.lab)).check()
    assert info.alive and info.pid
    if which == "master":
        return info.pid
    started = int(start_time(info.pid))
    candidates = {}
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            words = cmdline.read_bytes().split(b"\0")
            pid = int(cmdline.parent.name)
        except (OSError, ValueError):
            continue
        if b"-W" in words and f"[{sbx.address('login')}]:22".encode() in words and start_time(pid):
            candidates[pid] = abs(int(start_time(pid)) - started)  # started with the master
    assert candidates, "no ProxyJump child found"
    return min(candidates, key=candidates.get)


@pytest.mark.parametrize("which", ["master", "proxy"])
def test_killing_the_jump_hop_under_a_background_forward_recovers(lab_cli, sbx, which):
    cli = lab_cli()
    proc = cli("lab.start", "--name", f"kill{which}", "--no-browser", "--detach")
    assert proc.returncode == 0, proc.stderr
    status_url = _url(proc).replace("/lab?", "/api/status?")
    subprocess.run(["kill", "-9", str(_jump_hop_pid(cli, sbx, which))], check=True)
    time.sleep(1)
    assert _answers_within(status_url, 60) == 200  # the same URL, with no user action
    assert "reconnecting" in (cli.state_dir / "labs" / f"kill{which}.forward.log").read_text()


def test_an_alias_without_identity_file_logs_in_with_the_agent(lab_cli, sbx, tmp_path):
    """No IdentityFile, no IdentitiesOnly: OpenSSH offers the agent's keys, as for the user's own ssh."""
    agent = subprocess.run(["ssh-agent", "-s", "-a", str(tmp_path / "agent.sock")], capture_output=True, text=True,
                           check=True).stdout
    pid = int(re.search(r"SSH_AGENT_PID=(\d+)", agent).group(1))
    try:
        env = {"SSH_AUTH_SOCK": str(tmp_path / "agent.sock")}
        subprocess.run(["ssh-add", "-q", str(sbx.identity)], env=env, check=True, capture_output=True)
        cfg = tmp_path / "ssh_config"
        cfg.write_text(sbx.ssh_config.read_text().replace(f"    IdentityFile {sbx.identity}\n", "")
                       .replace("    IdentitiesOnly yes\n", ""))
        cli = lab_cli(ssh_config=str(cfg))
        proc = cli("lab.start", "--name", "agent", "--no-browser", "--detach", env=env)
        assert proc.returncode == 0, proc.stderr
        assert requests.get(_url(proc).replace("/lab?", "/api/status?"), timeout=10).status_code == 200
    finally:
        from fabfile_lib.procs import terminate

        terminate(pid)


def test_a_missing_ssh_config_is_one_line(lab_cli, sbx, tmp_path):
    cli = lab_cli(ssh_config=str(tmp_path / "no-such-config"))
    err = one_line_error(cli("lab.start", "--name", "nocfg", "--no-browser"))
    assert "does not exist" in err and "lab.ssh_config" in err


def test_a_users_own_controlmaster_is_reused(lab_cli, sbx, tmp_path):
    """A config that already shares connections (ControlMaster/ControlPath) gets its own master reused."""
    cfg = tmp_path / "ssh_config"
    short = Path(tempfile.mkdtemp(prefix="cm", dir="/tmp"))  # %C is 40 characters; a socket path is short
    control = short / "%C"
    cfg.write_text(sbx.ssh_config.read_text().replace(
        "Host *\n", f"Host *\n    ControlMaster auto\n    ControlPath {control}\n    ControlPersist 60\n"))
    cli = lab_cli(ssh_config=str(cfg))
    proc = cli("lab.login")
    assert proc.returncode == 0 and "your own ControlMaster" in proc.stdout, proc.stdout + proc.stderr
    assert len(list(short.iterdir())) == 2, "a master for the login node and one for the jump host, the user's"
    assert not (cli.state_dir / "cm").exists() or not list((cli.state_dir / "cm").iterdir())
    proc = cli("lab.start", "--name", "own", "--no-browser", "--detach")
    assert proc.returncode == 0, proc.stderr
    assert cli("lab.cancel", "--name", "own").returncode == 0
    assert cli("lab.logout").returncode == 0
    subprocess.run(["ssh", "-F", str(cfg), "-O", "exit", "jump"], capture_output=True, check=False)
    time.sleep(0.5)
    assert not list(short.iterdir())
    short.rmdir()


def test_logout_holds_background_forwards_until_the_next_login(lab_cli, sbx):
    cli = lab_cli()
    proc = cli("lab.start", "--name", "lo", "--no-browser", "--detach")
    assert proc.returncode == 0, proc.stderr
    status_url = _url(proc).replace("/lab?", "/api/status?")
    proc = cli("lab.logout")
    assert proc.returncode == 0 and "logged out" in proc.stdout and "wait for the next login" in proc.stdout
    log = cli.state_dir / "labs" / "lo.forward.log"
    deadline = time.monotonic() + 20  # the forward notices at once, and tries again within 10 s
    while "you logged out" not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.5)
    with pytest.raises(requests.ConnectionError):
        requests.get(status_url, timeout=5)  # the forward did not log in again by itself
    proc = cli("lab.login")
    assert proc.returncode == 0 and "logged in" in proc.stdout, proc.stderr
    assert _answers_within(status_url, 20) == 200  # the same URL again, once logged in


def test_timeouts_say_what_was_done_with_the_job(lab_cli, sbx):
    cli = lab_cli(sbatch={"partition": "debug", "begin": "now+3600"}, wait_timeout=3)
    err = one_line_error(cli("lab.start", "--name", "slow", "--no-browser"))
    assert "within 3 s" in err and "pending" in err and "cancelled and nothing kept" in err, err
    assert_nothing_left(sbx, cli, "slow")

    assert cli("lab.submit", "--name", "slow").returncode == 0
    err = one_line_error(cli("lab.wait", "--name", "slow", "--timeout", "2"))
    assert "within 2 s" in err and "kept" in err and "inv lab.wait --name slow" in err, err
    assert "slow" in cli("lab.status", "--name", "slow").stdout  # the command it suggests works from here
    assert cli("lab.cancel", "--name", "slow").returncode == 0


def test_via_auto_tries_the_modes_in_order_and_remembers_what_works(lab_cli, sbx, tmp_path):
    lines = sbx.known_hosts.read_text().splitlines()
    cfg = _tampered_config(sbx, tmp_path, "\n".join(lines[:2]) + "\n")  # compute's key unknown: compute fails
    cli = lab_cli(ssh_config=str(cfg), via="auto")
    proc = cli("lab.start", "--name", "auto1", "--no-browser", "--detach")
    assert proc.returncode == 0, proc.stderr
    assert "via compute does not reach JupyterLab here" in proc.stdout and cli.record("auto1")["via"] == "login"
    assert json.loads((cli.state_dir / "clusters.json").read_text()).popitem()[1]["via"] == "login"
    again = cli("lab.start", "--name", "auto2", "--no-browser", "--detach")
    assert again.returncode == 0 and "does not reach" not in again.stdout, again.stdout
    assert cli.record("auto2")["via"] == "login"
