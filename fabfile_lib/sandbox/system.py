"""Running local commands for the sandbox, and the preconditions it needs from the machine."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import LabError

_log = logging.getLogger(__name__)

# Debian package that provides each program the sandbox runs.
PACKAGES = {
    "sshd": "openssh-server",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "munged": "munge",
    "slurmctld": "slurmctld",
    "slurmd": "slurmd",
    "sbatch": "slurm-client",
    "ip": "iproute2",
    "nsenter": "util-linux",
}


def run(argv: Sequence[str], *, check: bool = True, input: str | None = None, timeout: float = 120) -> str:
    """Run ``argv`` (never through a shell) and return its stdout; a failure becomes a LabError."""
    try:
        proc = subprocess.run(
            list(argv), input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError:
        raise LabError(f"{argv[0]} is not installed: run `inv sandbox.up` as root to install it.") from None
    except subprocess.TimeoutExpired:
        raise LabError(f"`{' '.join(argv)}` did not finish within {timeout:.0f} s.") from None
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise LabError(f"`{' '.join(argv)}` failed: {detail[-1] if detail else f'exit {proc.returncode}'}")
    return proc.stdout


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError(
            "the sandbox needs root (network namespaces, sshd, Slurm): run it as root (sudo inv sandbox.up)."
        )
    if shutil.which("ip") is None:
        raise LabError("`ip` (iproute2) is missing: install it with `apt-get install iproute2`.")
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        reason = probe.stderr.strip() or "ip netns failed"
        raise LabError(f"network namespaces are not available here: {reason}.")


def missing_packages(mfa: bool = False, code_server: bool = False) -> list[str]:
    missing = {pkg for prog, pkg in PACKAGES.items() if shutil.which(prog) is None}
    if code_server:
        from .code_server import missing_packages as for_code_server

        missing.update(for_code_server())
    if mfa and not any(True for d in ("/lib", "/usr/lib") for _ in Path(d).glob("*/security/pam_oath.so")):
        missing.add("libpam-oath")
    if mfa and shutil.which("oathtool") is None:
        missing.add("oathtool")  # codes for a newcomer trying the sandbox by hand
    # The compute node's Jupyter env is built by the system Python, which the cluster user can read.
    probe = ["/usr/bin/python3", "-c", "import ensurepip, venv"]
    if not Path(probe[0]).exists() or subprocess.run(probe, capture_output=True, check=False).returncode:
        missing.add("python3-venv")
    return sorted(missing)


def ensure_packages(echo: Callable[[str], None] = _log.info, mfa: bool = False, code_server: bool = False) -> None:
    """Install the Debian packages the sandbox runs, when any is missing (the machine has no systemd,
    so nothing starts by itself; we start every daemon ourselves)."""
    missing = missing_packages(mfa, code_server)
    if not missing:
        return
    if shutil.which("apt-get") is None:
        raise LabError(f"missing programs from {', '.join(missing)} and no apt-get to install them.")
    echo(f"installing {' '.join(missing)} (apt-get)...")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *missing]):
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False, timeout=900)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()
            raise LabError(f"`{' '.join(argv)}` failed: {tail[-1] if tail else proc.returncode}")
