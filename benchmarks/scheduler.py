"""What the tool costs slurmctld, counted by sdiag, and lab.start against the floor -- in one run.

    python3 benchmarks/scheduler.py [--minutes 11] [--pending-minutes 2] [--rounds 3] [--keep]

Needs root: it brings up its own sandbox (and takes it down at the end unless --keep). It resets sdiag's
counters and reads the RPCs slurmctld counted for the sandbox user while:

- one lab is held by a background forward, for --minutes after a settling of 30 s (a held lab reads its
  time limit once at start and then every 10 minutes: an 11-minute window shows that too);
- five labs are held at once, the same way;
- one pending lab (``--begin`` an hour away) is waited on by ``lab.wait``, for --pending-minutes after
  its first 10 s;

then ``lab.start --detach`` next to the floor (sbatch until Jupyter answers, measured on the login node),
as benchmarks/forwards.py measures it. Nothing here is an assertion.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from forwards import bench_tasks  # noqa: E402

from fabfile_lib import master, sandbox  # noqa: E402
from fabfile_lib.sandbox import SandboxConfig  # noqa: E402
from fabfile_lib.settings import LabSettings  # noqa: E402

SBX = SandboxConfig(name="flsched", subnet="10.251.9.0/24")
REPO = Path(__file__).resolve().parent.parent


def sdiag(*args: str) -> str:
    env = {**os.environ, "SLURM_CONF": str(SBX.slurm_conf)}
    return subprocess.run(["nsenter", f"--net=/run/netns/{SBX.netns('login')}", "sdiag", *args],
                          capture_output=True, text=True, check=True, env=env).stdout


def user_rpcs() -> int:
    match = re.search(rf"^\s*{re.escape(SBX.username)}\s+\(\s*\d+\)\s+count:(\d+)", sdiag(), re.M)
    return int(match.group(1)) if match else 0


def counted(seconds: float) -> int:
    """The user's RPCs over the next ``seconds``."""
    sdiag("--reset")
    time.sleep(seconds)
    return user_rpcs()


def inv(config: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "invoke", "-f", str(config), *args], cwd=REPO, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, check=False)
    if check and proc.returncode != 0:
        raise SystemExit(f"inv {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=11.0, help="window for the held labs")
    ap.add_argument("--pending-minutes", type=float, default=2.0, help="window for the pending lab")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of lab.start against the floor")
    ap.add_argument("--keep", action="store_true", help="leave the benchmark sandbox up")
    args = ap.parse_args()

    sandbox.up(SBX, echo=lambda m: None)
    statedir = tempfile.mkdtemp(prefix="flsched-")
    base = {"ssh_config": str(SBX.ssh_config), "login": "login", "setup": [f"source {SBX.venv}/bin/activate"],
            "state_dir": statedir, "sbatch": {"partition": "debug", "time": "02:00:00"}, "wait_timeout": 600}
    config = Path(statedir) / "lab.yaml"
    config.write_text(yaml.safe_dump({"lab": base}))
    window = args.minutes * 60
    try:
        inv(config, "lab.start", "--detach", "--no-browser", "--name", "h0")
        time.sleep(30)
        one = counted(window)
        for i in range(1, 5):
            inv(config, "lab.start", "--detach", "--no-browser", "--name", f"h{i}")
        time.sleep(30)
        five = counted(window)
        for i in range(5):
            inv(config, "lab.cancel", "--name", f"h{i}")
        inv(config, "lab.submit", "--name", "p", "--sbatch", "begin=now+1hour")
        waiting = subprocess.Popen([sys.executable, "-m", "invoke", "-f", str(config), "lab.wait", "--name", "p",
                                    "--timeout", str(args.pending_minutes * 60 + 10)], cwd=REPO,
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(10)
        pending = counted(args.pending_minutes * 60)
        waiting.wait(60)
        inv(config, "lab.cancel", "--name", "p")
        starts, floors, *_ = bench_tasks(LabSettings.from_config(base), args)
    finally:
        for kept in master.masters(LabSettings.from_config(base)):
            kept.close()
        if not args.keep:
            sandbox.down(SBX, echo=lambda m: None)

    per_min = 60 / window
    print("slurmctld RPCs of the user, counted by sdiag (sandbox, Slurm 22.05):")
    print(f"  one held lab     {one:3d} in {args.minutes:g} min = {one * per_min:.2f} per minute (goal <= 0.2)")
    print(f"  five held labs   {five:3d} in {args.minutes:g} min = {five * per_min:.2f} per minute together "
          "(goal <= 1)")
    print(f"  one pending lab  {pending:3d} in {args.pending_minutes:g} min after its first 10 s = "
          f"{pending / args.pending_minutes:.2f} per minute (goal <= 4)")
    over = [start - floor for start, floor in zip(starts, floors, strict=True)]
    med = statistics.median
    print(f"  inv lab.start --detach {med(starts):5.2f} s; floor {med(floors):5.2f} s; over the floor, round by "
          f"round: median {med(over):+.2f} s (min {min(over):+.2f}, max {max(over):+.2f})")


if __name__ == "__main__":
    main()
