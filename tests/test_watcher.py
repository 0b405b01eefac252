"""One watcher for all labs: five labs on two clusters held by one background process, each lab's trouble
its own, and a watcher killed with SIGKILL brought back holding what it held."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest

from fabfile_lib.procs import alive
from fabfile_lib.sandbox.lifecycle import SECOND_CLUSTER

from .conftest import answers, forward_ended, ssh, start_side_by_side, wait_for

pytestmark = pytest.mark.sandbox


def _tool_processes(state_dir: Path) -> list[int]:
    """The tool's background processes for this state directory (what `ps` would show the user)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            words = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(w.startswith(b"fabfile_lib.") for w in words) and str(state_dir).encode() in words:
            found.append(int(proc.name))
    return found


def _master_pid(cli) -> int:
    said = cli("lab.login").stdout
    found = re.search(r"master pid (\d+)", said)
    assert found, said
    return int(found.group(1))


def test_five_labs_on_two_clusters_are_held_by_one_watcher_and_each_lab_s_trouble_is_its_own(lab_cli, sbx):
    a = lab_cli()
    b = lab_cli(login=SECOND_CLUSTER, state_dir=str(a.state_dir))  # the same laptop, a second cluster
    labs = {**start_side_by_side(a, {"a1": "compute", "a2": "login", "a3": "reverse"}),
            **start_side_by_side(b, {"b1": "compute", "b2": "reverse"})}
    watchers = {(rec["forward_pid"], rec["forward_started"]) for rec in labs.values()}
    assert len(watchers) == 1 and alive(*next(iter(watchers)))
    assert _tool_processes(a.state_dir) == [next(iter(watchers))[0]]  # one background process of the tool
    assert all(answers(rec["forward_port"]) for rec in labs.values())
    master_a, master_b = _master_pid(a), _master_pid(b)
    assert master_a != master_b  # one kept login per cluster

    # scancel behind the tool's back: that lab's forwards end within 10 s, and no other's.
    assert ssh(sbx, "login", f"scancel {labs['a1']['job_id']}").returncode == 0
    began = time.monotonic()
    wait_for(lambda: forward_ended(a, "a1") and not answers(labs["a1"]["forward_port"]), timeout=12, step=0.2)
    print(f"a scancelled lab's forwards closed after {time.monotonic() - began:.1f} s")
    assert time.monotonic() - began <= 10
    assert all(answers(labs[n]["forward_port"]) for n in ("a2", "a3", "b1", "b2"))

    # The first cluster's login killed: its labs heal on their own ports; the second cluster's never notice.
    os.kill(master_a, signal.SIGKILL)
    wait_for(lambda: not answers(labs["a2"]["forward_port"]), timeout=10, step=0.2)  # it rode that master
    for _ in range(10):
        assert answers(labs["b1"]["forward_port"]) and answers(labs["b2"]["forward_port"])
        time.sleep(0.5)
    for name in ("a2", "a3"):
        wait_for(lambda name=name: answers(labs[name]["forward_port"]), timeout=60, step=0.5)
    assert _master_pid(b) == master_b

    # The last cancel ends the watcher.
    for cli, name in ((a, "a1"), (a, "a2"), (a, "a3"), (b, "b1")):
        assert cli("lab.cancel", "--name", name).returncode == 0
        assert alive(*next(iter(watchers)))
    assert answers(labs["b2"]["forward_port"])
    assert b("lab.cancel", "--name", "b2").returncode == 0
    wait_for(lambda: not alive(*next(iter(watchers))), timeout=10, step=0.1)
    assert not _tool_processes(a.state_dir)


def test_a_watcher_killed_with_sigkill_is_brought_back_holding_every_lab(lab_cli, sbx):
    cli = lab_cli()
    labs = start_side_by_side(cli, {"k1": "compute", "k2": "login", "k3": "reverse"})
    pid, started = labs["k1"]["forward_pid"], labs["k1"]["forward_started"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not alive(pid, started), timeout=10, step=0.1)
    status = cli("lab.status").stdout
    assert status.count("background forwards are gone") == 3, status
    assert "inv lab.tunnel --name k1 --detach" in status, status
    back = cli("lab.tunnel", "--name", "k1", "--detach", "--no-browser")
    assert back.returncode == 0, back.stderr
    for name, rec in labs.items():
        wait_for(lambda name=name: cli.record(name)["forward_pid"] not in (0, pid), timeout=30, step=0.2)
        wait_for(lambda rec=rec: answers(rec["forward_port"]), timeout=30, step=0.2)  # the same URL
    assert len({cli.record(name)["forward_pid"] for name in labs}) == 1
    assert len(_tool_processes(cli.state_dir)) == 1
    assert cli("lab.status").stdout.count("(answers)") == 3
