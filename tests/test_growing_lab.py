"""A lab that grows with the work and ends when it is not used -- against the sandbox: a port added while
it runs (a Dask dashboard), the Slurm jobs its notebooks start (dask-jobqueue workers, plain sbatch) ended
with it, an idle lab that gives its node back and a busy one that keeps it, and what the job was given.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import time
from pathlib import Path

import pytest
import requests

from fabfile_lib import idle_watch

from .conftest import assert_nothing_left, fake_browser, read_bytes, sdiag, ssh, start_side_by_side, user_rpcs, wait_for
from .kernel import Kernel

pytestmark = pytest.mark.sandbox


def _status(cli, name: str) -> dict:
    proc = cli("lab.status", "--name", name, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _get(url: str) -> tuple[int, str]:
    try:
        answer = requests.get(url, timeout=10)
        return answer.status_code, answer.text
    except requests.RequestException:
        return 0, ""


def _node_links_of(pid: int) -> list[int]:
    """The watcher's links to compute nodes (its ssh children with a ControlMaster of their own)."""
    found = []
    for path in Path("/proc").glob("[0-9]*/stat"):
        fields = read_bytes(path).decode(errors="replace").rsplit(")", 1)[-1].split()
        if fields and int(fields[1]) == pid and b"ControlPersist=no" in read_bytes(path.parent / "cmdline"):
            found.append(int(path.parent.name))
    return found


def _active_jobs(sbx, ids: list[str]) -> list[str]:
    out = ssh(sbx, "login", f"squeue -h -o '%i %T' -j {','.join(ids)}").stdout.split("\n")
    return [line.split()[0] for line in out if line.split()[1:2] and line.split()[1] not in ("COMPLETING",)]


def test_a_dask_dashboard_in_a_gpu_lab_is_one_forward_away_and_heals_with_the_lab(lab_cli, sbx):
    cli = lab_cli()
    proc = cli("lab.start", "--name", "dash", "--gpus", "1", "--detach", "--no-browser")
    assert proc.returncode == 0, proc.stderr
    rec = cli.record("dash")
    given = _status(cli, "dash")
    assert given["resources"]["gpus"] == 1 and given["resources"]["gpu_types"] == ["sandbox"], given
    assert "1 GPU (sandbox)" in cli("lab.status", "--name", "dash").stdout

    kernel = Kernel.of(rec)
    out = kernel.run("from dask.distributed import Client, LocalCluster\n"
                     "cluster = LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address='127.0.0.1:8787')\n"
                     "client = Client(cluster)\nprint(client.submit(sum, [1, 2, 3]).result())")
    assert out.strip().endswith("6"), out

    browser, opened = fake_browser(cli.state_dir.parent)
    proc = cli("lab.forward", "--name", "dash", "--target", "8787", "--open", env={"BROWSER": str(browser)})
    assert proc.returncode == 0, proc.stderr
    match = re.search(r"(http://127\.0\.0\.1:(\d+)/) -> 8787 \(open to other users of \S+\)", proc.stdout)
    assert match, proc.stdout
    url, port = match.group(1), int(match.group(2))
    assert opened.read_text().strip() == url  # --open: the browser gets the forward's own URL (no secret in it)
    code, body = _get(url + "status")
    assert code == 200 and "Dask" in body, (code, body[:200])
    listed = _status(cli, "dash")["forwards"]
    assert [(f["to"], f["local_port"], f["state"]) for f in listed] == [("8787", port, "up")]
    assert "8787" in cli("lab.forward", "--name", "dash", "--list").stdout

    # The connection that carries the lab resets: the lab and its added forward come back on their ports.
    links = _node_links_of(rec["forward_pid"])
    assert links, "no node link under the watcher"
    for pid in links:
        os.kill(pid, signal.SIGTERM)
    wait_for(lambda: _get(url + "status")[0] == 200 and _get(f"http://127.0.0.1:{rec['forward_port']}/api")[0] == 200,
             timeout=60)

    # A socket on the node (Jupyter's own, here) and a port of the login node (its sshd) are forwarded too.
    proc = cli("lab.forward", "--name", "dash", "--target", rec["remote_socket"])
    assert proc.returncode == 0 and "open to" not in proc.stdout, proc.stdout + proc.stderr  # a 0600 socket
    socket_url = re.search(r"(http://127\.0\.0\.1:\d+/)", proc.stdout).group(1)
    assert _get(socket_url + "api")[0] == 200
    proc = cli("lab.forward", "--name", "dash", "--target", "login:22")
    assert proc.returncode == 0 and "open to other users of" in proc.stdout, proc.stdout + proc.stderr
    login_port = int(re.search(r"http://127\.0\.0\.1:(\d+)/", proc.stdout).group(1))
    with socket.create_connection(("127.0.0.1", login_port), timeout=10) as conn:
        assert conn.recv(64).startswith(b"SSH-2.0-")
    for target in (rec["remote_socket"], "login:22"):
        assert cli("lab.forward", "--name", "dash", "--stop", target).returncode == 0

    proc = cli("lab.forward", "--name", "dash", "--stop", "8787")
    assert proc.returncode == 0 and "stopped the forward to 8787" in proc.stdout, proc.stdout + proc.stderr
    assert _get(url + "status")[0] == 0
    assert _status(cli, "dash")["forwards"] == []
    assert cli("lab.cancel", "--name", "dash").returncode == 0
    assert_nothing_left(sbx, cli)


def _two_sleepers(kernel: Kernel) -> list[str]:
    """Two jobs from a cell: one by Python's subprocess (PATH), one by a login shell, as a terminal of the
    lab runs one (its profile sets PATH anew: the lab's sbatch is an exported function there)."""
    out = kernel.run("import subprocess\nfor argv in (['sbatch', '--wrap', 'sleep 600'],"
                     " ['bash', '-lc', 'sbatch --wrap \"sleep 600\"']):\n"
                     "    print(subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip())")
    ids = re.findall(r"Submitted batch job (\d+)", out)
    assert len(ids) == 2, out
    return ids


def _listed(cli, name: str, ids: list[str]) -> bool:
    return {j["job_id"] for j in _status(cli, name)["jobs"]} >= set(ids)


def test_slurm_jobs_started_in_the_lab_end_with_it_and_an_idle_lab_beside_it_gives_its_node_back(lab_cli, sbx):
    """Two long holds side by side (one sandbox, one test): three labs with jobs of their own, and -- under
    lab.idle 2m, its own configuration and watcher -- an idle lab and a busy one."""
    cli, idle_cli = lab_cli(), lab_cli(idle="2m")
    labs = start_side_by_side(cli, {"workers": "compute", "scancelled": "compute", "kept": "compute"},
                              beside=(idle_cli, {"idle": "compute", "busy": "compute"}))
    up = time.monotonic()
    Kernel.of(labs["idle"]).run("print('a cell, then nothing')")
    Kernel.of(labs["busy"]).run("import time; time.sleep(200); print('done')", wait=False)  # browser closed

    # dask-jobqueue from a cell: two worker jobs run a computation; two plain jobs beside them.
    kernel = Kernel.of(labs["workers"])
    out = kernel.run(
        "import socket\nfrom dask.distributed import Client\nfrom dask_jobqueue import SLURMCluster\n"
        "cluster = SLURMCluster(cores=1, processes=1, memory='200MB', queue='debug', walltime='00:15:00',"
        " scheduler_options={'host': '127.0.0.1', 'dashboard_address': ':0'},"
        " worker_extra_args=['--host', '127.0.0.1'])\n"
        "cluster.scale(jobs=2)\nclient = Client(cluster)\nclient.wait_for_workers(2, timeout=90)\n"
        "print(sorted(set(client.run(socket.gethostname).values())), len(client.run(socket.gethostname)))",
        timeout=150)
    assert f"['{sbx.hostname('compute')}'] 2" in out, out
    sleepers = _two_sleepers(kernel)
    wait_for(lambda: len(_status(cli, "workers")["jobs"]) == 4, timeout=20)
    started = [j["job_id"] for j in _status(cli, "workers")["jobs"]]
    assert set(sleepers) < set(started) and all(j["state"] in ("RUNNING", "PENDING") for j in
                                                _status(cli, "workers")["jobs"])
    shown = ssh(sbx, "login", f"squeue -h -o '%i %k' -j {','.join(started)}").stdout
    assert shown.count(f"fabfile-lab:{labs['workers']['job_id']}") == 4, shown
    assert "jobs it started: 4" in cli("lab.status", "--name", "workers").stdout

    # Held with its four jobs, the lab costs the scheduler what a lab alone does (once each hold has read
    # its job's time limit, in its first 30 s).
    time.sleep(max(0.0, 35 - (time.monotonic() - up)))
    sdiag(sbx, "--reset")
    time.sleep(60)
    rpcs = user_rpcs(sbx)
    print(f"slurmctld RPCs of the user in 60 s, five labs held (two under lab.idle), one with four jobs: {rpcs}")
    assert rpcs <= 1

    began = time.monotonic()
    proc = cli("lab.cancel", "--name", "workers")
    assert proc.returncode == 0 and "and the jobs it had started" in proc.stdout, proc.stdout + proc.stderr
    wait_for(lambda: not _active_jobs(sbx, started), timeout=15)
    assert time.monotonic() - began <= 15 + 5  # the cancel's own time, and 15 s for the jobs

    # The lab's job scancelled from elsewhere: its jobs end with it, with the laptop's forward told why.
    sleepers = _two_sleepers(Kernel.of(labs["scancelled"]))
    assert ssh(sbx, "login", f"scancel {labs['scancelled']['job_id']}").returncode == 0
    ended = time.monotonic()
    wait_for(lambda: not _active_jobs(sbx, sleepers), timeout=15)
    assert time.monotonic() - ended <= 15
    log = cli.state_dir / "labs" / "scancelled.forward.log"
    wait_for(lambda: "ended with it" in log.read_text(), timeout=20)
    assert f"the 2 jobs it had started ({' '.join(sleepers)}) ended with it" in log.read_text()

    # --keep-jobs: they stay.
    sleepers = _two_sleepers(Kernel.of(labs["kept"]))
    proc = cli("lab.cancel", "--name", "kept", "--keep-jobs")
    assert proc.returncode == 0 and "keep running (--keep-jobs)" in proc.stdout, proc.stdout + proc.stderr
    time.sleep(5)
    assert sorted(_active_jobs(sbx, sleepers)) == sorted(sleepers)
    ssh(sbx, "login", f"scancel {' '.join(sleepers)}")
    assert cli("lab.cancel", "--name", "scancelled").returncode == 0

    _idle_and_busy(idle_cli, labs, up)
    assert_nothing_left(sbx, cli)




def _idle_and_busy(cli, labs: dict, began: float) -> None:
    """The idle lab ends within lab.idle and a step or two, warned first; the busy one (a cell running
    all along, no browser) outlives that by more than two of the idle watcher's steps."""
    wait_for(lambda: _status(cli, "idle")["ended_because"], timeout=200, step=5)
    took = time.monotonic() - began
    print(f"an idle lab with lab.idle 2m ended {took:.0f} s after its last use")
    assert took <= 180
    assert _status(cli, "idle")["ended_because"].startswith("idle for 2 min, lab.idle")
    assert "has ended: idle for 2 min, lab.idle" in cli("lab.status", "--name", "idle").stdout
    log_path = cli.state_dir / "labs" / "idle.forward.log"  # the watcher hears of the end on its own path
    wait_for(lambda: "has ended: idle for 2 min" in log_path.read_text(), timeout=30, step=1)
    log = log_path.read_text()
    warned, ended = log.find("unused for a while: the lab ends at"), log.find("has ended: idle for 2 min")
    assert 0 <= warned < ended, log

    while time.monotonic() - began < 120 + 3 * idle_watch.step(120):  # the cell runs 200 s: in use all along
        assert _status(cli, "busy")["state"] == "RUNNING"
        time.sleep(10)
    assert "unused for a while" not in (cli.state_dir / "labs" / "busy.forward.log").read_text()
    for name in ("idle", "busy"):
        assert cli("lab.cancel", "--name", name).returncode == 0


def test_a_code_server_without_its_own_idle_setting_says_so_in_one_line(lab_cli, sbx):
    from fabfile_lib.sandbox import code_server

    setup = [f"source {sbx.venv}/bin/activate",
             f"export PATH={code_server.binary(Path(sbx.code_server)).parent}:$PATH"]
    cli = lab_cli(idle="2m", app="code-server", setup=setup)
    proc = cli("lab.start", "--name", "csidle", "--detach", "--no-browser")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "has no --idle-timeout-seconds, which lab.idle needs: set lab.idle: 0 for it" in last, proc.stderr
    assert_nothing_left(sbx, cli)
