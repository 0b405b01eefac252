"""The scheduler left in peace, and forwards that never lie -- against the sandbox, counted with sdiag.

A held lab knows its state from its own path (Jupyter answering through the forward, the job's files) and
asks Slurm only when that changes; a pending one asks with a backoff; a Slurm that does not answer is
asked later and never ends anything. The long holds run side by side to keep the suite's time.
"""

from __future__ import annotations

import subprocess
import threading
import time

import pytest

from fabfile_lib.procs import alive
from fabfile_lib.sandbox import cluster, daemons

from .conftest import REPO, answers, forward_ended, sdiag, ssh, start_side_by_side, user_rpcs, wait_for

pytestmark = pytest.mark.sandbox
MODES = ("compute", "login", "reverse")


def test_held_labs_cost_the_scheduler_nothing_and_still_notice_scancel_within_10_s(lab_cli, sbx):
    cli = lab_cli()
    records = start_side_by_side(cli, {f"held{via}": via for via in MODES})
    time.sleep(30)  # the first 30 s: each forward reads its job's time limit once
    sdiag(sbx, "--reset")
    for _ in range(18):  # 3 minutes, every URL answering all along
        time.sleep(10)
        assert all(answers(rec["forward_port"]) for rec in records.values())
    rpcs = user_rpcs(sbx)
    print(f"slurmctld RPCs of the user for 3 labs held 3 minutes: {rpcs}")
    assert rpcs <= 3

    for rec in records.values():
        assert ssh(sbx, "login", f"scancel {rec['job_id']}").returncode == 0
    began = time.monotonic()
    for name in records:
        wait_for(lambda name=name: forward_ended(cli, name), timeout=12, step=0.2)
        assert "has ended: it was cancelled" in (cli.state_dir / "labs" / f"{name}.forward.log").read_text()
    assert time.monotonic() - began <= 10


def test_a_pending_lab_asks_rarely_and_a_scheduler_that_is_down_ends_nothing(lab_cli, sbx):
    cli = lab_cli(wait_timeout=300)
    held = start_side_by_side(cli, {"steady": "compute"})["steady"]
    proc = cli("lab.submit", "--name", "later", "--sbatch", "begin=now+10minutes")
    assert proc.returncode == 0, proc.stderr
    waiting = subprocess.Popen(["python3", "-m", "invoke", "-f", str(cli.path), "lab.wait", "--name", "later",
                                "--timeout", "130"], cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    time.sleep(10)
    sdiag(sbx, "--reset")
    out, err = waiting.communicate(timeout=200)
    rpcs = user_rpcs(sbx)
    print(f"slurmctld RPCs of the user while one lab waited 2 minutes (pending) and one was held: {rpcs}")
    assert rpcs <= 8
    assert waiting.returncode == 4 and "pending: BeginTime" in err, err  # timed out, and kept
    assert "later" in cli("lab.status", "--name", "later").stdout

    # slurmctld stopped for 60 s: the held lab keeps answering, lab.wait and lab.start keep waiting, nothing
    # is lost.
    starting = subprocess.Popen(["python3", "-m", "invoke", "-f", str(cli.path), "lab.start", "--name", "during",
                                 "--sbatch", "begin=now+10minutes", "--detach", "--no-browser"], cwd=REPO,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: (cli.state_dir / "labs" / "during.json").exists() and cli.record("during")["job_id"], timeout=60)
    for name in ("later", "during"):
        job = cli.record(name)["job_id"]
        assert ssh(sbx, "login", f"scontrol update job {job} StartTime=now+20").returncode == 0
    daemons.stop(sbx.run_dir / "slurmctld.pid")
    waiting = subprocess.Popen(["python3", "-m", "invoke", "-f", str(cli.path), "lab.wait", "--name", "later",
                                "--timeout", "240"], cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    restarted = threading.Timer(60, cluster.start_slurm, args=(sbx,))
    restarted.start()
    try:
        for _ in range(12):
            time.sleep(5)
            assert answers(held["forward_port"]) and alive(held["forward_pid"], held["forward_started"])
            assert waiting.poll() is None and starting.poll() is None
    finally:
        restarted.join()
    out, err = waiting.communicate(timeout=200)
    assert waiting.returncode == 0, err
    assert "JupyterLab answers" in out
    out, err = starting.communicate(timeout=200)  # lab.start's own wait went on, and it finished
    assert starting.returncode == 0, err
    assert answers(cli.record("during")["forward_port"])
    assert answers(held["forward_port"]) and alive(held["forward_pid"], held["forward_started"])
    tunnel = cli("lab.tunnel", "--name", "later", "--detach", "--no-browser")
    assert tunnel.returncode == 0, tunnel.stderr


def test_logout_and_login_back_to_back_under_background_forwards(lab_cli, sbx):
    cli = lab_cli()
    records = start_side_by_side(cli, {f"relog{via}": via for via in MODES})
    assert cli("lab.logout").returncode == 0
    assert cli("lab.login").returncode == 0  # at once: a new master between two looks of the forwards
    began = time.monotonic()
    for rec in records.values():
        wait_for(lambda rec=rec: answers(rec["forward_port"]), timeout=30, step=0.5)
    assert time.monotonic() - began <= 30
    status = cli("lab.status")
    assert status.stdout.count("(answers)") == 3, status.stdout


def test_status_never_shows_a_url_that_does_not_answer(lab_cli, sbx):
    cli = lab_cli()
    rec = start_side_by_side(cli, {"liar": "login"})["liar"]
    assert "(answers)" in cli("lab.status", "--name", "liar").stdout
    # The lab's forward is stopped: the URL is gone from status, which says why and what to do.
    assert cli("lab.tunnel", "--name", "liar", "--stop").returncode == 0
    out = cli("lab.status", "--name", "liar").stdout
    assert "http://" not in out and "not answering: no forwards open: `inv lab.tunnel --name liar`" in out, out
    # Logged out under a background forward: the forward says, once, that a login is needed, and the record
    # holds that for status (any task run now would log in again, by design, and so heal it).
    assert cli("lab.tunnel", "--name", "liar", "--detach", "--no-browser").returncode == 0
    assert cli("lab.logout").returncode == 0
    wait_for(lambda: "login needed" in cli.record("liar")["forward_note"], timeout=30, step=1)
    time.sleep(5)
    log = (cli.state_dir / "labs" / "liar.forward.log").read_text()
    assert log.count("login needed") == 1, log  # once per change, not once per tick
    assert cli("lab.login").returncode == 0
    rec = cli.record("liar")
    wait_for(lambda: answers(rec["forward_port"]), timeout=30)
    assert "(answers)" in cli("lab.status", "--name", "liar").stdout
