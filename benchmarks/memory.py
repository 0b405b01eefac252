"""What the tool keeps running on the laptop, in proportional memory (PSS): for one held lab, for five, and
for the five after minutes of traffic through all of them.

    python3 benchmarks/memory.py [--minutes 10] [--reconnects 5] [--keep]

Needs root: it brings up its own sandbox (and takes it down at the end unless --keep). "Kept running" is
every process of the tool's: the watcher and its children, and the ssh processes of its kept login (the
master, and the ``ssh -W`` of its ProxyJump, reparented when the master went to the background) --
found by the watcher's pid and by this benchmark's own ssh config. PSS (from /proc/PID/smaps_rollup)
counts a page shared by N processes as 1/N in each, so the sum is what they cost together. Traffic: in
turn through each lab's URL, a 1 MiB download and 20 small requests on new connections: one minute (ssh's
channel buffers grow to their high-water mark, once), then --minutes more, whose growth would be a leak;
then --reconnects times the kept login is ended (by the pid its ``-O check`` names) and the watcher makes
every forward again, each followed by half a minute of traffic: what the watcher holds alone after each.
Nothing here is an assertion; it prints the figures and the ratios against the goals.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fabfile_lib import master, procs, sandbox, watcher  # noqa: E402
from fabfile_lib.sandbox import SandboxConfig  # noqa: E402
from fabfile_lib.settings import LabSettings  # noqa: E402

SBX = SandboxConfig(name="flmem", subnet="10.251.7.0/24")
REPO = Path(__file__).resolve().parent.parent
MODES = ("compute", "login", "reverse", "compute", "reverse")  # five labs


def _processes() -> dict[int, tuple[int, list[str]]]:
    """pid -> (parent pid, argv) of every process now."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = [w.decode(errors="replace") for w in (entry / "cmdline").read_bytes().split(b"\0") if w]
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        found[int(entry.name)] = (parent, argv)
    return found


def kept_running(state_dir: Path) -> list[int]:
    """The tool's processes: the watcher and its descendants, and every ssh of this sandbox's config."""
    table = _processes()
    known = watcher.recorded(state_dir)
    ours = {known[0]} if known and known[0] in table else set()
    config = str(SBX.ssh_config)
    ours |= {pid for pid, (_, argv) in table.items() if argv[:1] and argv[0].endswith("ssh") and config in argv}
    grew = True
    while grew:
        more = {pid for pid, (parent, _) in table.items() if parent in ours} - ours
        grew = bool(more)
        ours |= more
    return sorted(ours)


def pss_mib(pids: list[int], fields: tuple[str, ...] = ("Pss:",)) -> float:
    total_kib = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith(fields):
                    total_kib += int(line.split()[1])
        except OSError:
            continue
    return total_kib / 1024


def private_mib(pids: list[int]) -> float:
    """What the processes hold alone (USS): unlike PSS, it does not move as other processes map the same
    libraries, so its growth is theirs."""
    return pss_mib(pids, ("Private_Clean:", "Private_Dirty:"))


def _inv(config: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "invoke", "-f", str(config), *args], cwd=REPO,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"inv {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc


def _record(state_dir: Path, name: str) -> dict:
    import json

    return json.loads((state_dir / "labs" / f"{name}.json").read_text())


def traffic(labs: list[dict], minutes: float) -> int:
    """Requests through every lab's URL, in turn, for ``minutes``; how many were made."""
    made, deadline = 0, time.monotonic() + minutes * 60
    while time.monotonic() < deadline:
        for rec in labs:
            base = f"http://127.0.0.1:{rec['forward_port']}"
            auth = {"Authorization": f"token {rec['token']}"}
            requests.get(f"{base}/files/mem.bin", headers=auth, timeout=30).raise_for_status()
            for _ in range(20):
                requests.get(f"{base}/api/status", headers=auth, timeout=10).raise_for_status()
            made += 21
    return made


def settle(state_dir: Path) -> tuple[float, float]:
    """PSS once the processes have settled (a just-started ssh is still loading): (all, the watcher's own)."""
    time.sleep(5)
    known = watcher.recorded(state_dir)
    return pss_mib(kept_running(state_dir)), pss_mib([known[0]] if known else [])


def split_mib(pids: list[int]) -> tuple[float, float]:
    """The PSS in two: anonymous (heaps and stacks: what a leak grows) and file-backed (libraries and
    code, whose share moves as other processes -- here the sandbox's own sshd -- map the same files)."""
    return pss_mib(pids, ("Pss_Anon:",)), pss_mib(pids, ("Pss_File:",))


def _answers(rec: dict) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{rec['forward_port']}/api/status", timeout=5,
                            headers={"Authorization": f"token {rec['token']}"}).status_code == 200
    except requests.RequestException:
        return False


def reconnect(settings: LabSettings, labs: list[dict]) -> float:
    """End the kept login (its master, by the pid it names) and wait until every lab answers again at its
    URL, the watcher having made its forwards again: seconds it took."""
    pid = master.plan(settings).check().pid
    if not pid:
        raise SystemExit("no kept login to end")
    started = time.monotonic()
    procs.terminate(pid)  # by pid and start time, as the tool ends what it started
    time.sleep(2)  # the watcher sees a forward's master gone within its tick (1 s)
    while not all(_answers(rec) for rec in labs):
        if time.monotonic() - started > 120:
            raise SystemExit("the labs did not answer again after a reconnect")
        time.sleep(0.5)
    return time.monotonic() - started


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10.0, help="minutes of traffic through the five labs")
    ap.add_argument("--reconnects", type=int, default=5,
                    help="then: times the kept login is ended (every forward made again), each followed by traffic")
    ap.add_argument("--keep", action="store_true", help="leave the benchmark sandbox up")
    args = ap.parse_args()

    sandbox.up(SBX, echo=lambda m: None)
    state_dir = Path(tempfile.mkdtemp(prefix="flmem-"))
    (SBX.home / "mem.bin").write_bytes(os.urandom(1 << 20))
    base = {"ssh_config": str(SBX.ssh_config), "login": "login", "state_dir": str(state_dir),
            "setup": [f"source {SBX.venv}/bin/activate"], "sbatch": {"partition": "debug", "time": "01:00:00"}}
    config = state_dir / "mem.yaml"
    config.write_text(yaml.safe_dump({"lab": base}))
    names = [f"m{i}" for i in range(len(MODES))]
    try:
        _inv(config, "lab.login")
        _inv(config, "lab.start", "--detach", "--no-browser", "--name", names[0], "--via", MODES[0])
        (one, one_py), one_procs = settle(state_dir), len(kept_running(state_dir))
        for name, via in zip(names[1:], MODES[1:], strict=True):
            _inv(config, "lab.start", "--detach", "--no-browser", "--name", name, "--via", via)
        (five, five_py), five_procs = settle(state_dir), len(kept_running(state_dir))
        labs = [_record(state_dir, n) for n in names]
        made = traffic(labs, 1.0)  # the first minute fills ssh's channel buffers: their high-water mark
        warm, warm_py = settle(state_dir)
        warm_anon, warm_file = split_mib(kept_running(state_dir))
        series = []  # minute by minute: a leak grows with the traffic, a high-water mark levels off
        for _ in range(max(1, round(args.minutes))):
            made += traffic(labs, args.minutes / max(1, round(args.minutes)))
            pids, known = kept_running(state_dir), watcher.recorded(state_dir)
            watcher_pids = [known[0]] if known else []
            others = [p for p in pids if p not in watcher_pids]
            series.append((pss_mib(pids), private_mib(watcher_pids), private_mib(others), split_mib(pids)[0]))
        after, after_py = settle(state_dir)
        after_anon, after_file = split_mib(kept_running(state_dir))
        settings, again = LabSettings.from_config(base), []  # per reconnect: (seconds, watcher's USS)
        for _ in range(args.reconnects):
            took = reconnect(settings, labs)
            made += traffic(labs, 0.5)
            known = watcher.recorded(state_dir)
            again.append((took, private_mib([known[0]] if known else [])))
        last, _ = settle(state_dir)
    finally:
        for name in names:
            if (state_dir / "labs" / f"{name}.json").exists():
                _inv(config, "lab.cancel", "--name", name)
        master.plan(LabSettings.from_config(base)).close()
        (SBX.home / "mem.bin").unlink(missing_ok=True)
        shutil.rmtree(state_dir, ignore_errors=True)
        if not args.keep:
            sandbox.down(SBX, echo=lambda m: None)

    print("proportional memory (PSS) of everything the tool keeps running on the laptop (OpenSSH transport):")
    print(f"  one held lab    {one:6.1f} MiB in {one_procs} processes (the watcher {one_py:.1f} MiB)")
    print(f"  five held labs  {five:6.1f} MiB in {five_procs} processes (the watcher {five_py:.1f} MiB) = "
          f"{five / one:.2f}x one (goal <= 1.3x); modes {', '.join(MODES)}")
    print(f"  after a first minute of traffic through all five: {warm:6.1f} MiB (the watcher {warm_py:.1f} MiB; "
          "ssh's channel buffers at their high-water mark)")
    print(f"  after {args.minutes:g} more minutes ({made} requests in all): {after:6.1f} MiB (the watcher "
          f"{after_py:.1f} MiB) = {(after / warm - 1) * 100:+.1f}% over the first minute (goal <= +5%)")
    if len(series) > 10:  # the goal's own span, within a longer run
        print(f"  ... at the tenth minute: {series[9][0]:6.1f} MiB = {(series[9][0] / warm - 1) * 100:+.1f}% over the "
              "first minute")
    print(f"  ... of it anonymous (heaps, stacks: what a leak grows) {warm_anon:.1f} -> {after_anon:.1f} MiB = "
          f"{(after_anon / warm_anon - 1) * 100:+.1f}%; file-backed (libraries, shared with the sandbox's own "
          f"processes) {warm_file:.1f} -> {after_file:.1f} MiB")
    print(f"  minute by minute, PSS: {' '.join(f'{row[0]:.1f}' for row in series)} MiB; "
          f"of it anonymous: {' '.join(f'{row[3]:.1f}' for row in series)} MiB")
    print(f"  ... held alone (USS) by the watcher: {' '.join(f'{row[1]:.1f}' for row in series)} MiB; "
          f"by the ssh processes: {' '.join(f'{row[2]:.1f}' for row in series)} MiB")
    if again:
        print(f"  then {len(again)} reconnects (the kept login ended, every lab's forward made again, half a "
              f"minute of traffic after each; {' '.join(f'{took:.1f}' for took, _ in again)} s until all five "
              f"answered): the watcher's USS {series[-1][1]:.1f} -> {' '.join(f'{mib:.1f}' for _, mib in again)} "
              f"MiB; all PSS {last:.1f} MiB (new ssh processes)")


if __name__ == "__main__":
    main()
