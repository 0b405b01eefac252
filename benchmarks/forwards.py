"""Our forwards and tasks against OpenSSH by hand, measured in the same run, in alternating rounds.

    python3 benchmarks/forwards.py [--via compute,login,reverse] [--transport auto] [--mib 64]
                                   [--requests 50] [--rounds 3] [--keep]

Needs root: it brings up its own sandbox (and takes it down at the end unless --keep). For each mode it
starts a lab, then alternates rounds of: a --mib download from Jupyter's /files/ and --requests small
requests on new connections, through our forward (`lab.tunnel --detach`) and through a hand-run
`ssh -F <sandbox ssh_config> -N -L` along the same hops. It prints the medians and the ratios ours/OpenSSH.
It also times, with a login kept: `inv lab.status` (10 s after its lab started, beside `inv --version` and
`python -c pass`), and `inv lab.start --detach` next to the floor --
sbatch until Jupyter answers, measured on the login node itself in the same run. Bounded: every round is
one download and --requests requests per path; nothing here is an assertion.
"""

from __future__ import annotations

import argparse
import os
import posixpath
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fabfile_lib import batch_script, lab_dir, master, sandbox, state  # noqa: E402
from fabfile_lib import lab as labapi  # noqa: E402
from fabfile_lib.hops import Hops  # noqa: E402
from fabfile_lib.sandbox import SandboxConfig  # noqa: E402
from fabfile_lib.settings import LabSettings  # noqa: E402

SBX = SandboxConfig(name="flbench", subnet="10.251.8.0/24")
REPO = Path(__file__).resolve().parent.parent

# Run on the login node: sbatch the launch script, then poll until Jupyter answers; print milliseconds.
FLOOR_PROBE = r"""
import glob, json, os, subprocess, sys, time, urllib.request
lab_dir = sys.argv[1]
os.chdir(lab_dir)
os.umask(0o077)
t0, w0 = time.monotonic(), time.time()
job = subprocess.run(["sbatch", "--parsable", "launch.sh"], capture_output=True, text=True).stdout.strip().split(";")[0]
token = open("token").read().strip()
while time.monotonic() - t0 < 120:
    for path in glob.glob("runtime/jpserver-*.json"):
        try:
            info = json.load(open(path))
            req = urllib.request.Request(f"http://{info['hostname']}:{info['port']}/api/status",
                                         headers={"Authorization": f"token {token}"})
            if urllib.request.urlopen(req, timeout=2).status == 200:
                print(int((time.monotonic() - t0) * 1000), int((os.stat(path).st_mtime - w0) * 1000))
                subprocess.run(["scancel", job])
                sys.exit(0)
        except Exception:
            pass
    time.sleep(0.05)
subprocess.run(["scancel", job])
sys.exit("Jupyter did not answer")
"""


def _get(port: int, path: str, token: str) -> int:
    """One HTTP/1.0 GET; returns the number of body bytes."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: token {token}\r\n\r\n".encode())
        total = 0
        while data := sock.recv(1 << 16):
            total += len(data)
    return total


def measure(port: int, token: str, mib: int, requests: int) -> tuple[float, float]:
    """(MB/s of one download, ms per request on a new connection)."""
    started = time.perf_counter()
    size = _get(port, "/files/bench.bin", token)
    mbps = size / (time.perf_counter() - started) / 1e6
    if size < mib * 1024 * 1024:
        raise SystemExit(f"short download: {size} bytes")
    started = time.perf_counter()
    for _ in range(requests):
        _get(port, "/api/status", token)
    return mbps, (time.perf_counter() - started) / requests * 1000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _inv(config: Path, *args: str) -> float:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "invoke", "-f", str(config), *args], cwd=REPO,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"inv {' '.join(args)} failed: {proc.stderr.strip()}")
    return elapsed


def _openssh_forward(record: state.LabRecord, via: str) -> tuple[subprocess.Popen, int]:
    # The same far end as ours: Jupyter's private socket, or its port (login mode, Paramiko, a fallback).
    host = "compute" if via == "compute" else "login"
    port = _free_port()
    proc = subprocess.Popen(["ssh", "-F", str(SBX.ssh_config), "-N", "-o", "ExitOnForwardFailure=yes",
                             "-L", f"127.0.0.1:{port}:{record.far}", host])
    deadline = time.monotonic() + 20
    while labapi.check_url(record, port) != 200:
        if time.monotonic() > deadline:
            raise SystemExit("the OpenSSH forward did not come up")
        time.sleep(0.2)
    return proc, port


def bench_forwards(settings: LabSettings, via: str, args) -> tuple[list, list]:
    with Hops(settings) as hops:
        record = labapi.wait(settings, labapi.submit(settings, hops), hops)
    record = labapi.start_detached(settings, record)
    ssh_fwd, port = _openssh_forward(record, via)
    ours, theirs = [], []
    try:
        for _ in range(args.rounds):
            ours.append(measure(record.forward_port, record.token, args.mib, args.requests))
            theirs.append(measure(port, record.token, args.mib, args.requests))
    finally:
        ssh_fwd.terminate()
        ssh_fwd.wait()
        with Hops(settings) as hops:
            labapi.cancel(settings, state.load(settings.state_path, record.name), hops)
    return ours, theirs


def _lab_config(settings: LabSettings) -> dict:
    return {"ssh_config": settings.ssh_config, "login": settings.login, "state_dir": settings.state_dir,
            "transport": settings.transport, "sbatch": dict(settings.sbatch), "setup": list(settings.setup)}


def floor_ms(settings: LabSettings) -> tuple[float, float]:
    """sbatch until Jupyter answers, measured on the login node (Jupyter on the node's address); and until
    Jupyter's runtime file appeared (Slurm's and Jupyter's own share of it)."""
    s = LabSettings.from_config({**_lab_config(settings), "via": "login", "name": "floor"})
    with Hops(s) as hops:
        base = lab_dir.base(hops, s.remote_dir)
        where = posixpath.join(base, f"floor-{secrets.token_hex(4)}")
        files = {lab_dir.TOKEN_FILE: secrets.token_urlsafe(32), lab_dir.SCRIPT: batch_script.render(s, where),
                 "probe.py": FLOOR_PROBE}
        try:  # made as a lab's directory is; the probe times sbatch until Jupyter answers, on the login node
            out = lab_dir.create(hops, base, where, files, then='/usr/bin/python3 probe.py "$2"')
            answered, listening = out.stdout.split()
            return float(answered), float(listening)
        finally:
            hops.login().run(f"rm -rf {where}", hide=True, in_stream=False)


def wait_idle(settings: LabSettings, timeout: float = 60) -> None:
    """Both measurements start from a settled, idle node: a job just cancelled keeps it busy a moment."""
    deadline = time.monotonic() + timeout
    with Hops(settings) as hops:
        while time.monotonic() < deadline:
            states = hops.login().run("sinfo -h -N -o %t", hide=True, in_stream=False).stdout.split()
            if states and set(states) <= {"idle"}:
                # "idle" comes a moment before Slurm places a new job there without delay: settle, so
                # neither measurement pays for the previous job's cleanup.
                time.sleep(3)
                return
            time.sleep(0.2)


def _timed(*argv: str) -> float:
    started = time.perf_counter()
    subprocess.run(argv, cwd=REPO, capture_output=True, stdin=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def bench_tasks(settings: LabSettings, args) -> tuple[list[float], ...]:
    config = Path(settings.state_dir) / "bench.yaml"
    config.write_text(yaml.safe_dump({"lab": _lab_config(settings)}))
    if settings.transport != "paramiko":
        _inv(config, "lab.login")
    starts, floors, statuses, versions, pythons, rest = [], [], [], [], [], []
    for i in range(args.rounds):
        wait_idle(settings)
        answered, listening = floor_ms(settings)
        floors.append(answered / 1000)
        wait_idle(settings)
        starts.append(_inv(config, "lab.start", "--detach", "--no-browser", "--name", f"t{i}"))
        # What is left of each once Slurm's and Jupyter's own time -- from sbatch (the launch script is
        # written in the same command) until the app listens (its runtime file) -- is taken out.
        remote = Path(state.load(Path(settings.state_dir), f"t{i}").remote_dir)
        job = ((remote / lab_dir.RUNTIME_DIR / lab_dir.APP_FILE).stat().st_mtime
               - (remote / lab_dir.SCRIPT).stat().st_mtime)
        rest.append((starts[-1] - job, (answered - listening) / 1000))
        print(f"  round {i + 1}: start {starts[-1]:.2f} s (sbatch until the app listened {job:.2f} s), floor "
              f"{answered / 1000:.2f} s ({listening / 1000:.2f} s)", flush=True)
        time.sleep(10)  # status as a user runs it: not while the new Jupyter still loads on the sandbox's 2 cores
        for _ in range(5):  # side by side: the status line, Invoke's own start-up, Python's
            statuses.append(_inv(config, "lab.status", "--name", f"t{i}"))
            versions.append(_timed(sys.executable, "-m", "invoke", "--version"))
            pythons.append(_timed(sys.executable, "-c", "pass"))
        _inv(config, "lab.cancel", "--name", f"t{i}")
    return starts, floors, statuses, versions, pythons, rest


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--via", default="compute,login,reverse", help="modes to measure forwards in, or none")
    ap.add_argument("--transport", default="auto", choices=["auto", "openssh", "paramiko"])
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--requests", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--keep", action="store_true", help="leave the benchmark sandbox up")
    args = ap.parse_args()

    # As an installed package is: compiled (pip compiles on install; PYTHONDONTWRITEBYTECODE, set on some
    # machines, would otherwise make every run compile what changed since the last compile).
    subprocess.run([sys.executable, "-m", "compileall", "-q", "fabfile_lib", "tasks.py"], cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL)
    sandbox.up(SBX, echo=lambda m: None)
    statedir = tempfile.mkdtemp(prefix="flbench-")
    blob = SBX.home / "bench.bin"
    blob.write_bytes(os.urandom(args.mib * 1024 * 1024))
    results = {}
    base = {"ssh_config": str(SBX.ssh_config), "login": "login", "transport": args.transport,
            "setup": [f"source {SBX.venv}/bin/activate"], "state_dir": statedir,
            "sbatch": {"partition": "debug", "time": "00:20:00"}}
    try:
        for via in [v for v in args.via.split(",") if v != "none"]:
            settings = LabSettings.from_config({**base, "via": via, "name": f"bench-{via}"})
            results[via] = bench_forwards(settings, via, args)
        tasks = bench_tasks(LabSettings.from_config(base), args)
    finally:
        blob.unlink(missing_ok=True)
        if args.transport != "paramiko":  # before its socket's directory goes
            master.plan(LabSettings.from_config(base)).close()
        shutil.rmtree(statedir, ignore_errors=True)
        if not args.keep:
            sandbox.down(SBX, echo=lambda m: None)

    med = statistics.median
    print(f"transport {args.transport}; {args.rounds} alternating rounds of a {args.mib} MiB download and "
          f"{args.requests} requests on new connections; medians")
    for via, (ours, theirs) in results.items():
        o_mb, t_mb = med(m for m, _ in ours), med(m for m, _ in theirs)
        o_ms, t_ms = med(ms for _, ms in ours), med(ms for _, ms in theirs)
        print(f"  via {via:8} throughput ours {o_mb:7.1f} MB/s  ssh -L {t_mb:7.1f} MB/s  ratio {o_mb / t_mb:.2f}x   "
              f"latency ours {o_ms:6.2f} ms  ssh -L {t_ms:6.2f} ms  ratio {o_ms / t_ms:.2f}x")
    starts, floors, statuses, versions, pythons, rest = tasks
    print(f"  inv lab.status           {med(statuses):5.2f} s (median of {len(statuses)}, login kept) = "
          f"{med(statuses) / med(versions):.2f}x inv --version ({med(versions):.2f} s; goal <= 1.5x); "
          f"python -c pass {med(pythons):.2f} s")
    over = [start - floor for start, floor in zip(starts, floors, strict=True)]
    print(f"  inv lab.start --detach   {med(starts):5.2f} s; floor (sbatch until Jupyter answers, on the login "
          f"node) {med(floors):5.2f} s; over the floor, round by round: median {med(over):+.2f} s "
          f"(min {min(over):+.2f}, max {max(over):+.2f})")
    print(f"  ... without Slurm's and Jupyter's own time (until the app listened): the command "
          f"{med(r for r, _ in rest):.2f} s, the floor {med(f for _, f in rest):.2f} s: "
          f"{med(r - f for r, f in rest):+.2f} s")

if __name__ == "__main__":
    main()
