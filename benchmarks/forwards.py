"""Throughput and per-request latency of the lab's forwards against OpenSSH, measured in the same run.

    python3 benchmarks/forwards.py [--via compute|login|reverse] [--mib 64] [--requests 50]

Needs root (it brings the benchmark's own sandbox up, and down again at the end unless --keep). Both paths
reach the same Jupyter: ours through the detached forward (`lab.tunnel --detach`), OpenSSH's through
`ssh -F <sandbox ssh_config> -N -L` along the same hops. Prints MB/s and ms per request and the ratios
ours/OpenSSH. Bounded: one download of --mib MiB and --requests small requests per path.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fabfile_lib import lab, sandbox, state  # noqa: E402
from fabfile_lib.hops import Hops  # noqa: E402
from fabfile_lib.sandbox import SandboxConfig  # noqa: E402
from fabfile_lib.settings import LabSettings  # noqa: E402

SBX = SandboxConfig(name="flbench", subnet="10.251.8.0/24")


def _get(port: int, path: str, token: str) -> int:
    """One HTTP/1.0 GET; returns the number of body bytes."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: token {token}\r\n\r\n".encode())
        total = 0
        while data := sock.recv(1 << 16):
            total += len(data)
    return total


def measure(port: int, token: str, mib: int, requests: int) -> tuple[float, float]:
    started = time.perf_counter()
    size = _get(port, "/files/bench.bin", token)
    mbps = size / (time.perf_counter() - started) / 1e6
    started = time.perf_counter()
    for _ in range(requests):
        _get(port, "/api/status", token)
    ms = (time.perf_counter() - started) / requests * 1000
    if size < mib * 1024 * 1024:
        raise SystemExit(f"short download: {size} bytes")
    return mbps, ms


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--via", default="compute", choices=["compute", "login", "reverse"])
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--requests", type=int, default=50)
    ap.add_argument("--keep", action="store_true", help="leave the benchmark sandbox up")
    args = ap.parse_args()

    sandbox.up(SBX, echo=lambda m: None)
    statedir = tempfile.mkdtemp(prefix="flbench-")
    settings = LabSettings.from_config({
        "ssh_config": str(SBX.ssh_config), "login": "login", "via": args.via, "name": "bench",
        "setup": [f"source {SBX.venv}/bin/activate"], "state_dir": statedir,
        "sbatch": {"partition": "debug", "time": "00:20:00"}})
    blob = SBX.home / "bench.bin"
    blob.write_bytes(os.urandom(args.mib * 1024 * 1024))
    ssh_fwd = None
    try:
        with Hops(settings) as hops:
            record = lab.wait(settings, lab.submit(settings, hops), hops)
        record = lab.start_detached(settings, record)
        ours = measure(record.forward_port, record.token, args.mib, args.requests)

        target = {"compute": ("compute", "127.0.0.1", record.jupyter_port),
                  "login": ("login", record.remote_host, record.remote_port),
                  "reverse": ("login", "127.0.0.1", record.remote_port)}[args.via]
        port = _free_port()
        ssh_fwd = subprocess.Popen(["ssh", "-F", str(SBX.ssh_config), "-N", "-o", "ExitOnForwardFailure=yes",
                                    "-L", f"127.0.0.1:{port}:{target[1]}:{target[2]}", target[0]])
        deadline = time.monotonic() + 20
        while lab.check_url(record, port) != 200:
            if time.monotonic() > deadline:
                raise SystemExit("the OpenSSH forward did not come up")
            time.sleep(0.2)
        openssh = measure(port, record.token, args.mib, args.requests)
    finally:
        if ssh_fwd:
            ssh_fwd.terminate()
        blob.unlink(missing_ok=True)
        if state.exists(settings.state_path, "bench"):
            rec = state.load(settings.state_path, "bench")
            with Hops(settings) as hops:
                lab.cancel(settings, rec, hops)
        if not args.keep:
            sandbox.down(SBX, echo=lambda m: None)

    print(f"via {args.via}: {args.mib} MiB download, {args.requests} requests on new connections")
    print(f"  throughput  ours {ours[0]:8.1f} MB/s   OpenSSH {openssh[0]:7.1f} MB/s ratio {ours[0] / openssh[0]:.2f}x")
    print(f"  latency     ours {ours[1]:8.2f} ms     OpenSSH {openssh[1]:7.2f} ms   ratio {ours[1] / openssh[1]:.2f}x")


if __name__ == "__main__":
    main()
