"""Trust, against the sandbox: the token reaches no other local user, whatever the cluster says is data.

The browser is opened on a private page, never on a URL with the token; a listener planted on the port
before the forward binds gets nothing and the lab is not announced; a forged lab.json or node name runs
nothing and removes nothing."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from .conftest import REPO, answers, one_line_error, throwaway_user

pytestmark = pytest.mark.sandbox


def test_the_browser_is_opened_on_a_private_page_never_with_the_token_in_its_argv(lab_cli, tmp_path):
    seen = tmp_path / "browser-argv"
    fake = tmp_path / "browser"
    fake.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" >> {seen}\n")
    fake.chmod(0o755)
    cli = lab_cli()
    proc = cli("lab.start", "--name", "tok", "--detach", env={"BROWSER": str(fake)})
    assert proc.returncode == 0, proc.stderr
    token = cli.record("tok")["token"]
    argv = seen.read_text()
    assert token not in argv and argv.startswith("file://"), argv
    page = Path(argv.strip().removeprefix("file://"))
    assert token in page.read_text()  # the page sends the browser on to the lab
    assert stat.S_IMODE(page.stat().st_mode) == 0o600 and stat.S_IMODE(page.parent.stat().st_mode) == 0o700
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            assert token.encode() not in cmdline.read_bytes(), cmdline
        except OSError:
            continue
    assert token in proc.stdout  # printed for the user, on their terminal
    assert cli("lab.cancel", "--name", "tok").returncode == 0
    assert not page.exists()


class _Planted:
    """A listener on 127.0.0.1:PORT that answers like Jupyter and keeps every request it receives."""

    def __init__(self, port: int):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(8)
        self.sock.settimeout(0.5)
        self.received = b""
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    self.received += conn.recv(65536)
                    conn.sendall(b'HTTP/1.0 200 OK\r\n\r\n{"version": "2.0.0"}')
                except OSError:
                    pass

    def close(self):
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


@pytest.mark.parametrize("via", ["compute", "login"])
def test_a_listener_planted_on_the_port_gets_nothing_and_the_lab_is_not_announced(lab_cli, via):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cli = lab_cli(local_port=port)
    proc = cli("lab.start", "--name", f"pl{via}", "--via", via, "--detach", "--no-browser")
    assert proc.returncode == 0, proc.stderr
    token = cli.record(f"pl{via}")["token"]
    assert cli("lab.tunnel", "--name", f"pl{via}", "--stop").returncode == 0
    planted = _Planted(port)  # someone else takes 127.0.0.1:PORT while the forward is down
    try:
        err = one_line_error(cli("lab.tunnel", "--name", f"pl{via}", "--no-browser", timeout=90))
        assert str(port) in err, err
        assert token.encode() not in planted.received
        assert f"http://127.0.0.1:{port}" not in err
    finally:
        planted.close()
    assert cli("lab.tunnel", "--name", f"pl{via}", "--detach", "--no-browser").returncode == 0
    assert answers(port)


def test_forged_lab_json_files_are_one_line_each_and_never_reach_rm(lab_cli, sbx, tmp_path):
    cli = lab_cli()
    assert cli("lab.start", "--name", "real", "--detach", "--no-browser").returncode == 0
    base = sbx.home / ".fabfile-lab"
    victim = sbx.home / "precious"
    victim.mkdir()
    (victim / "data").write_text("keep me")
    uid, gid = victim.stat().st_uid, base.stat().st_gid
    forged = {
        "types": {"name": "types", "job_id": 7, "via": "compute", "created": 1.0, "version": "x",
                  "remote_dir": str(base / "types-0011aabb")},
        "dotdot": {"name": "dotdot", "job_id": "9999", "via": "compute", "created": 1.0, "version": "x",
                   "remote_dir": str(base / ".." / "precious")},
        "url": {"name": "url", "job_id": "9998", "via": "compute", "created": 1.0, "version": "x",
                "remote_dir": str(base / "url-0011aabc"), "url_path": "@evil.example/x"},
    }
    for name, data in forged.items():
        where = base / f"{name}-00aa11bb"
        where.mkdir()
        (where / "lab.json").write_text(json.dumps(data))
        os.chown(where, uid, gid)
    fifo_dir = base / "fifo-00aa11cc"
    fifo_dir.mkdir()
    os.mkfifo(fifo_dir / "lab.json")
    try:
        listed = cli("lab.list", "--cluster", timeout=60)
        assert listed.returncode == 0 and "real: job" in listed.stdout, listed.stdout + listed.stderr
        for name in forged:
            assert f"{name}:" not in listed.stdout
        err = one_line_error(cli("lab.cancel", "--job", "9999"))
        assert "no lab" in err
        assert (victim / "data").read_text() == "keep me"

        # A 1 GB job log (sparse): its tail is read, never the whole of it, by lab.logs and lab.logs --follow.
        os.truncate(Path(cli.record("real")["remote_dir"]) / "job.log", 1 << 30)
        logs = cli("lab.logs", "--name", "real", timeout=60)
        assert logs.returncode == 0 and len(logs.stdout) <= 64 * 1024 + 100, len(logs.stdout)
        with tempfile.TemporaryFile() as out:
            follow = subprocess.Popen(["python3", "-m", "invoke", "-f", str(cli.path), "lab.logs", "--name", "real",
                                       "--follow"], cwd=REPO, stdin=subprocess.DEVNULL, stdout=out,
                                      stderr=subprocess.DEVNULL)
            time.sleep(5)
            follow.terminate()
            follow.wait(10)
            assert 0 < out.seek(0, os.SEEK_END) <= 64 * 1024 + 100
        assert json.loads(cli("lab.status", "--name", "real", "--json").stdout)["answers"]
    finally:  # what this test forged is its own to remove: the tool never touches it
        for made in (*(base / f"{name}-00aa11bb" for name in forged), fifo_dir, victim):
            shutil.rmtree(made, ignore_errors=True)


@pytest.mark.parametrize("shape", ["quotes", "scope-id"])
def test_hostile_scheduler_output_runs_nothing_and_is_one_line(lab_cli, sbx, tmp_path, shape):
    """A ~/bin/scontrol and ~/bin/squeue on the user's PATH (which any job could write) print a node
    address and node names built to run code: nothing of it runs, here or on the cluster. (An IPv6
    address with a scope id: ``ipaddress`` takes any text after the ``%``.)"""
    import uuid

    marker = Path(f"/tmp/fabfile-lab-pwned-{uuid.uuid4().hex}")
    evil = {"quotes": f"n1'$(touch {marker})'$(touch {marker})",
            "scope-id": f"fe80::1%$(touch${{IFS}}{marker})"}[shape]
    home = sbx.home
    bindir = home / "bin"
    bindir.mkdir(exist_ok=True)
    (bindir / "scontrol").write_text(  # prints the hostile text as it is (a quoted here-document runs nothing)
        "#!/bin/sh\n"
        "case \"$*\" in *'show node'*) cat <<'EVIL'\n"
        f"NodeName=x NodeAddr={evil} Arch=x\n"
        "EVIL\n"
        "exit 0 ;; esac\n"
        "exec /usr/bin/scontrol \"$@\"\n")
    (bindir / "squeue").write_text(
        "#!/bin/sh\n"
        f"/usr/bin/squeue \"$@\" | sed 's/|{sbx.hostname('compute')}|/|-oProxyCommand=touch%20{marker.name}|/'\n")
    bashrc = home / ".bashrc"
    saved = bashrc.read_text() if bashrc.exists() else ""
    bashrc.write_text('export PATH="$HOME/bin:$PATH"\n' + saved)
    for path in (bindir, bindir / "scontrol", bindir / "squeue", bashrc):
        os.chown(path, home.stat().st_uid, home.stat().st_gid)
        path.chmod(0o755 if path != bashrc else 0o644)
    try:
        cli = lab_cli()
        err = one_line_error(cli("lab.start", "--name", "hostile", "--no-browser", "--detach"))
        assert "not a host name or an IP address" in err and "kept" in err, err
        status = cli("lab.status", "--name", "hostile")
        assert "-oProxyCommand" not in status.stdout and "Traceback" not in status.stderr
        listed = cli("lab.list", "--cluster")
        assert listed.returncode == 0 and "hostile" in listed.stdout and "ProxyCommand" not in listed.stdout
        vscode = cli("lab.vscode", "--name", "hostile")
        assert vscode.returncode != 0 and "Traceback" not in vscode.stderr
        assert not marker.exists()
    finally:
        bashrc.write_text(saved)
        for name in ("scontrol", "squeue"):
            (bindir / name).unlink()
        marker.unlink(missing_ok=True)


def test_two_starts_of_one_name_make_one_job_and_one_line(lab_cli, sbx):

    from .conftest import REPO, ssh

    cli = lab_cli()
    argv = ["python3", "-m", "invoke", "-f", str(cli.path), "lab.start", "--name", "twice", "--detach",
            "--no-browser"]
    procs = [subprocess.Popen(argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(180), *p.communicate()) for p in procs]
    assert sorted(code for code, _, _ in results) == [0, 1], results
    failed = next(r for r in results if r[0] == 1)
    assert failed[2].count("\n") == 1 and "already recorded" in failed[2], failed[2]
    jobs = ssh(sbx, "login", f"squeue -h -u {sbx.username} -n lab-twice -o %i").stdout.split()
    assert jobs == [cli.record("twice")["job_id"]]


def test_a_start_killed_right_after_sbatch_leaves_a_lab_that_list_and_cancel_find(lab_cli, sbx):
    import signal

    from .conftest import REPO, ssh, wait_for

    home = sbx.home
    bindir = home / "bin"
    bindir.mkdir(exist_ok=True)
    slow = bindir / "sbatch"
    slow.write_text("#!/bin/sh\n/usr/bin/sbatch \"$@\"\nstatus=$?\nsleep 30\nexit $status\n")
    bashrc = home / ".bashrc"
    saved = bashrc.read_text() if bashrc.exists() else ""
    bashrc.write_text('export PATH="$HOME/bin:$PATH"\n' + saved)
    for path in (bindir, slow, bashrc):
        os.chown(path, home.stat().st_uid, home.stat().st_gid)
    slow.chmod(0o755)
    try:
        cli = lab_cli()
        proc = subprocess.Popen(["python3", "-m", "invoke", "-f", str(cli.path), "lab.start", "--name", "killed",
                                 "--no-browser"], cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        wait_for(lambda: ssh(sbx, "login", f"squeue -h -u {sbx.username} -n lab-killed -o %i").stdout.strip(),
                 timeout=60)
        job = ssh(sbx, "login", f"squeue -h -u {sbx.username} -n lab-killed -o %i").stdout.strip()
        time.sleep(1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        bashrc.write_text(saved)
        slow.unlink()
    listed = cli("lab.list", "--cluster")
    assert f"killed: job {job}" in listed.stdout, listed.stdout + listed.stderr
    assert cli("lab.cancel", "--name", "killed").returncode == 0
    # Cancelled: gone from squeue once Slurm has finished completing it (CG for a few seconds).
    wait_for(lambda: ssh(sbx, "login", f"squeue -h -j {job}").stdout.strip() == "", timeout=60, step=1)


def test_another_local_user_finds_no_token_during_a_whole_lifecycle(lab_cli):
    """A throwaway local account reads every /proc/*/cmdline and /proc/*/environ it can, all through start,
    status, logs, tunnel and cancel: the token is in none of them."""
    with throwaway_user("fltok") as account:
        _spy_on_a_lifecycle(lab_cli, account)


def _spy_on_a_lifecycle(lab_cli, account: str) -> None:
    import pwd
    import shutil
    import signal

    spy_dir = Path(tempfile.mkdtemp(prefix="flspy-"))
    spy_dir.chmod(0o755)
    hits, needle = spy_dir / "hits", spy_dir / "needle"
    hits.touch()
    os.chown(hits, pwd.getpwnam(account).pw_uid, -1)
    cli = lab_cli()
    assert cli("lab.submit", "--name", "spied").returncode == 0
    needle.write_text(cli.record("spied")["token"])
    needle.chmod(0o644)
    loop = (f"end=$(($(date +%s) + 300)); while [ $(date +%s) -lt $end ]; do "
            f"grep -l -F -f {needle} /proc/[0-9]*/cmdline /proc/[0-9]*/environ 2>/dev/null >> {hits}; "
            "sleep 0.05; done")
    spy = subprocess.Popen(["su", account, "-s", "/bin/sh", "-c", loop], start_new_session=True)
    try:
        for args in (("lab.wait", "--name", "spied"), ("lab.tunnel", "--name", "spied", "--detach", "--no-browser"),
                     ("lab.status", "--name", "spied"), ("lab.logs", "--name", "spied"),
                     ("lab.tunnel", "--name", "spied", "--stop"), ("lab.cancel", "--name", "spied")):
            assert cli(*args).returncode == 0, args
    finally:
        os.killpg(spy.pid, signal.SIGTERM)  # the group this test started, and nothing else
        spy.wait(10)
    found = hits.read_text()
    shutil.rmtree(spy_dir)
    assert found == "", found


def test_an_existing_remote_dir_keeps_its_mode_home_or_group_directory(lab_cli, sbx):
    home = sbx.home
    group = home / "project"
    group.mkdir(exist_ok=True)
    os.chown(group, home.stat().st_uid, home.stat().st_gid)
    group.chmod(0o2770)
    home.chmod(0o750)  # a home the group may enter, as many sites make them
    try:
        for name, remote_dir in (("inhome", "~"), ("ingroup", str(group))):
            cli = lab_cli(remote_dir=remote_dir)
            proc = cli("lab.start", "--name", name, "--detach", "--no-browser")
            assert proc.returncode == 0, proc.stderr
            lab_dir = Path(cli.record(name)["remote_dir"])
            assert stat.S_IMODE(lab_dir.stat().st_mode) == 0o700 and lab_dir.parent == (
                home if remote_dir == "~" else group)
            assert cli("lab.cancel", "--name", name).returncode == 0
            assert not lab_dir.exists()
        assert stat.S_IMODE(home.stat().st_mode) == 0o750
        assert stat.S_IMODE(group.stat().st_mode) == 0o2770
    finally:
        home.chmod(0o700)


def test_a_login_node_without_stream_local_forwarding_gets_a_loopback_port_said_token_only(lab_cli, sbx):
    """Reverse mode where the site forbids stream-local forwarding (the sandbox login node's port 2222):
    the job falls back to a port on the login node's loopback, the lab works, and lab.status says
    token-only."""
    cli = lab_cli(via="reverse", reverse_target=f"{sbx.hostname('login')}-nostream")
    proc = cli("lab.start", "--name", "nostream", "--detach", "--no-browser")
    assert proc.returncode == 0, proc.stderr
    rec = cli.record("nostream")
    assert rec["remote_port"] and not rec["remote_socket"]
    said = (Path(rec["remote_dir"]) / "reverse.log").read_text()
    assert "forwarding failed for listen path" in said and "(token-only)" in said, said
    status = json.loads(cli("lab.status", "--name", "nostream", "--json").stdout)
    assert status["answers"] and status["listens"] == (f"JupyterLab on a private socket, reached through port "
                                                       f"{rec['remote_port']} of {sbx.hostname('login')}'s loopback "
                                                       "(token-only)")
    assert "(token-only)" in cli("lab.status", "--name", "nostream").stdout
    assert cli("lab.cancel", "--name", "nostream").returncode == 0


def test_a_lab_on_a_private_socket_attached_from_a_paramiko_machine_is_one_line(lab_cli, tmp_path):
    """Paramiko cannot forward to a Unix socket: attaching such a lab from a machine without OpenSSH says
    so in one line and records nothing there; the lab itself is untouched."""
    cli = lab_cli()
    assert cli("lab.start", "--name", "sock", "--detach", "--no-browser").returncode == 0
    assert cli.record("sock")["remote_socket"]
    other = lab_cli(transport="paramiko", state_dir=str(tmp_path / "windows-laptop"))
    err = one_line_error(other("lab.attach", "--name", "sock"))
    assert "only OpenSSH can forward" in err, err
    assert not (other.state_dir / "labs" / "sock.json").exists()
    assert answers(cli.record("sock")["forward_port"])
